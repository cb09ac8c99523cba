#include "selection.h"

#include <gtest/gtest.h>

namespace vfiolab::harness {
namespace {

TEST(HarnessNames, ParameterizedAndPlainTests) {
  TestName p = kselftest_name("vfio_dma_mapping_test/DmaMapping", "dma_map_unmap/iommufd_anonymous_hugetlb_2mb");
  EXPECT_EQ(p.fixture, "vfio_dma_mapping_test");
  EXPECT_EQ(p.variant, "iommufd_anonymous_hugetlb_2mb");
  EXPECT_EQ(p.test, "dma_map_unmap");
  EXPECT_EQ(p.full(), "vfio_dma_mapping_test.iommufd_anonymous_hugetlb_2mb.dma_map_unmap");

  TestName plain = kselftest_name("vfio_pci_device_test", "config_space_read_write");
  EXPECT_EQ(plain.variant, "");
  EXPECT_EQ(plain.full(), "vfio_pci_device_test.config_space_read_write");
}

TEST(HarnessSelection, FiltersCombineAcrossPartsAndRunNamesExactly) {
  TestName a{"fx", "iommufd", "map"};
  TestName b{"fx", "vfio_type1_iommu", "map"};
  TestName c{"other", "iommufd", "unmap"};
  Selection all;
  EXPECT_TRUE(all.selects(a) && all.selects(c));

  Selection by_variant{{}, {"iommufd"}, {}, {}};
  EXPECT_TRUE(by_variant.selects(a));
  EXPECT_FALSE(by_variant.selects(b));
  EXPECT_TRUE(by_variant.selects(c));

  Selection fixture_and_test{{"fx"}, {}, {"map"}, {}};
  EXPECT_TRUE(fixture_and_test.selects(a) && fixture_and_test.selects(b));
  EXPECT_FALSE(fixture_and_test.selects(c));

  Selection exact{{}, {}, {}, {"fx.vfio_type1_iommu.map"}};
  EXPECT_FALSE(exact.selects(a));
  EXPECT_TRUE(exact.selects(b));
  EXPECT_FALSE(exact.selects(c));

  Selection exact_or_fixture{{"other"}, {}, {}, {"fx.iommufd.map"}};
  EXPECT_TRUE(exact_or_fixture.selects(a));
  EXPECT_FALSE(exact_or_fixture.selects(b));
  EXPECT_TRUE(exact_or_fixture.selects(c));
}

TEST(HarnessGtestFilter, PositiveNegativeAndWildcards) {
  EXPECT_TRUE(gtest_filter_matches("*", "a/B.c/d"));
  EXPECT_TRUE(gtest_filter_matches("", "a.b"));
  EXPECT_TRUE(gtest_filter_matches("a.*", "a.b"));
  EXPECT_FALSE(gtest_filter_matches("a.*", "b.a"));
  EXPECT_TRUE(gtest_filter_matches("x.y:a.?", "a.b"));
  EXPECT_FALSE(gtest_filter_matches("*-a.*", "a.b"));
  EXPECT_TRUE(gtest_filter_matches("*-a.*", "c.b"));
  EXPECT_TRUE(gtest_filter_matches("-*reset*", "fx.map"));
  EXPECT_FALSE(gtest_filter_matches("-*reset*", "fx.reset"));
  EXPECT_TRUE(gtest_filter_matches("*t*e*s*t*", "the_best_test"));
  EXPECT_FALSE(gtest_filter_matches("a*b", "acbc"));
}

// "-t typo" must be an error, not an empty run that passes.
TEST(HarnessSelection, WordsThatMatchNothingAreNamed) {
  const std::vector<TestName> known{{"vfio_dma_mapping_test", "iommufd", "dma_map_unmap"},
                                    {"vfio_pci_device_test", "", "reset"}};
  Selection selection;
  EXPECT_TRUE(selection.unmatched(known).empty());
  selection.tests = {"reset", "rest"};
  selection.fixtures = {"vfio_pci_device_test"};
  selection.variants = {"iommufd"};
  selection.full = {"vfio_dma_mapping_test.iommufd.dma_map_unmap", "vfio_pci_device_test.reset.x"};
  EXPECT_EQ(selection.unmatched(known),
            (std::vector<std::string>{"-t rest", "-r vfio_pci_device_test.reset.x"}));
}

}  // namespace
}  // namespace vfiolab::harness
