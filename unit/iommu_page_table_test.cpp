#include "vfiolab/iommu_page_table.h"

#include <gtest/gtest.h>

namespace vfiolab {
namespace {

TEST(IntelTranslationStruct, LeafLevelGivesPageSize) {
  const char* dump =
      "Device 0000:00:04.0 @0x140525000\n"
      "IOVA_PFN\t\tPML5E\t\t\tPML4E\t\t\tPDPE\t\t\tPDE\t\t\tPTE\n"
      "0x0000000000010 |\t0x0000000000000000\t0x0000000140600003\t0x0000000140601003\t"
      "0x0000000140602003\t0x0000000123456003\n"
      "0x0000000000200 |\t0x0000000000000000\t0x0000000140600003\t0x0000000140601003\t0x0000000200000083\n"
      "0x0000000040000 |\t0x0000000000000000\t0x0000000140600003\t0x0000000400000083\n"
      "garbage | 0xzz\t0x1\t0x2\n";
  auto leaves = parse_intel_translation_struct(dump);
  ASSERT_EQ(leaves.size(), 3u);
  EXPECT_EQ(leaves[0].iova, 0x10000u);
  EXPECT_EQ(leaves[0].page_size, 4096u);
  EXPECT_EQ(leaves[1].iova, 0x200000u);
  EXPECT_EQ(leaves[1].page_size, 2u << 20);
  EXPECT_EQ(leaves[2].iova, 0x40000000u);
  EXPECT_EQ(leaves[2].page_size, 1u << 30);
}

TEST(IntelTranslationStruct, MalformedLinesAreIgnored) {
  EXPECT_TRUE(parse_intel_translation_struct("").empty());
  EXPECT_TRUE(parse_intel_translation_struct("0x10 |\n0x10 |\t0x1\t0x2\n| 0x1 0x2 0x3\n").empty());
  EXPECT_TRUE(parse_intel_translation_struct("0x10 |\t0x1\t0x2\t0x3\t0x4\t0x5\t0x6\n").empty());
  EXPECT_TRUE(parse_intel_translation_struct("0xffffffffffffffff |\t0x1\t0x2\t0x3\n").empty());
}

}  // namespace
}  // namespace vfiolab
