#include "check.h"
#include "vfiolab/sysfs.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace vfiolab {
namespace {

namespace fs = std::filesystem;

TEST(Bdf, ParsesFullAndShortForms) {
  auto full = check(parse_bdf("0000:00:04.0"));
  EXPECT_EQ(full.bus, 0);
  EXPECT_EQ(full.device, 4);
  EXPECT_EQ(full.function, 0);
  EXPECT_EQ(full.str(), "0000:00:04.0");

  auto upper = check(parse_bdf("ABCD:Ef:1F.7"));
  EXPECT_EQ(upper.segment, 0xabcd);
  EXPECT_EQ(upper.str(), "abcd:ef:1f.7");

  auto short_form = check(parse_bdf("01:02.3"));
  EXPECT_EQ(short_form.str(), "0000:01:02.3");
}

TEST(Bdf, RejectsMalformedWithAReason) {
  for (const char* bad : {"", "0000:00:04", "0000:00:20.0", "0000:00:04.8", "000:00:04.0", "0000:0:04.0",
                          "0000:00:04.0 ", "0000:00:04.0x", "zzzz:00:04.0", "0000:00:04:0", "0000-00-04.0",
                          "0000:00:04.0.1", "-000:00:04.0", "0000:00:+4.0", "0000:00:04.00000"}) {
    auto result = parse_bdf(bad);
    EXPECT_FALSE(result) << "accepted '" << bad << "'";
    if (!result) {
      EXPECT_NE(result.error().message().find("bad BDF"), std::string::npos);
    }
  }
}

class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("vfiolab-sysfs-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::path dev = root_ / "bus/pci/devices/0000:00:04.0";
    fs::create_directories(dev / "vfio-dev/vfio3");
    fs::create_directories(root_ / "bus/pci/drivers/vfio-pci");
    fs::create_directories(root_ / "kernel/iommu_groups/5/devices");
    std::ofstream(dev / "vendor") << "0x1234\n";
    std::ofstream(dev / "device") << "0x11e8\n";
    std::ofstream(dev / "sriov_numvfs") << "2\n";
    std::ofstream(dev / "sriov_totalvfs") << "7\n";
    fs::create_directory_symlink(root_ / "bus/pci/drivers/vfio-pci", dev / "driver");
    fs::create_directory_symlink(root_ / "kernel/iommu_groups/5", dev / "iommu_group");
    fs::create_directory_symlink(dev, root_ / "kernel/iommu_groups/5/devices/0000:00:04.0");
    fs::create_directories(root_ / "kernel/iommu_groups/5/devices/0000:00:03.0");
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(FakeSysfs, ReadsIdsDriverGroupAndCdev) {
  Sysfs sysfs(root_);
  Bdf bdf = *parse_bdf("0000:00:04.0");
  EXPECT_TRUE(sysfs.exists(bdf));
  EXPECT_EQ(sysfs.vendor(bdf), 0x1234);
  EXPECT_EQ(sysfs.device_id(bdf), 0x11e8);
  EXPECT_EQ(sysfs.driver(bdf), "vfio-pci");
  EXPECT_EQ(sysfs.iommu_group(bdf), 5);
  EXPECT_EQ(sysfs.vfio_cdev(bdf), "vfio3");
  EXPECT_EQ(sysfs.sriov_numvfs(bdf), 2u);
  EXPECT_EQ(sysfs.sriov_totalvfs(bdf), 7u);
  auto members = sysfs.iommu_group_members(5);
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[0].str(), "0000:00:03.0");
  EXPECT_EQ(members[1].str(), "0000:00:04.0");
}

// The kernel's links between a PF and its VFs: virtfnN in the PF's
// directory, physfn in each VF's (relative, as sysfs makes them).
TEST_F(FakeSysfs, FollowsVirtfnAndPhysfnLinks) {
  Sysfs sysfs(root_);
  const fs::path pf = root_ / "bus/pci/devices/0000:00:04.0";
  const fs::path vf = root_ / "bus/pci/devices/0000:00:14.2";
  fs::create_directories(vf);
  fs::create_directory_symlink("../0000:00:14.2", pf / "virtfn1");
  fs::create_directory_symlink("../0000:00:04.0", vf / "physfn");
  Bdf pf_bdf = *parse_bdf("0000:00:04.0");
  EXPECT_EQ(sysfs.sriov_vf(pf_bdf, 1), parse_bdf("0000:00:14.2").value());
  EXPECT_FALSE(sysfs.sriov_vf(pf_bdf, 0));
  EXPECT_EQ(sysfs.sriov_pf(*parse_bdf("0000:00:14.2")), pf_bdf);
  EXPECT_FALSE(sysfs.sriov_pf(pf_bdf));
}

TEST_F(FakeSysfs, AbsentDeviceGivesNothing) {
  Sysfs sysfs(root_);
  Bdf bdf = *parse_bdf("0000:00:05.0");
  EXPECT_FALSE(sysfs.exists(bdf));
  EXPECT_FALSE(sysfs.vendor(bdf));
  EXPECT_FALSE(sysfs.driver(bdf));
  EXPECT_FALSE(sysfs.iommu_group(bdf));
  EXPECT_FALSE(sysfs.vfio_cdev(bdf));
  EXPECT_FALSE(sysfs.sriov_numvfs(bdf));
  EXPECT_TRUE(sysfs.iommu_group_members(99).empty());
}

// The edu's resource file as a 6.12 kernel writes it: BAR0 memory, the rest
// absent, then the ROM and the bridge-window lines.
TEST(PciResources, ParsesTheKernelsFormat) {
  const std::string text =
      "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x000000000000c000 0x000000000000c01f 0x0000000000040101\n";
  auto parsed = check(parse_pci_resources(text));
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed[0].size(), 0x100000u);
  EXPECT_TRUE(parsed[0].mem());
  EXPECT_FALSE(parsed[0].io());
  EXPECT_EQ(parsed[1].size(), 0u);
  EXPECT_EQ(parsed[2].size(), 0x20u);
  EXPECT_TRUE(parsed[2].io());
}

TEST(PciResources, RejectsMalformedLinesNamingThem) {
  auto expect_error = [](const std::string& text, std::string_view words) {
    auto parsed = parse_pci_resources(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_NE(parsed.error().message().find(words), std::string::npos) << parsed.error();
  };
  expect_error("0x0 0x1\n", "line 1");
  expect_error("0x0 0x1 0x2\n0x0 zz 0x2\n", "line 2: 'zz'");
  expect_error("0x0 0x1g 0x2\n", "not a hex number");
  expect_error("0x10 0x1 0x2\n", "below start");
  expect_error("0x0 0x1 0x2 0x3\n", "more than three");
}

}  // namespace
}  // namespace vfiolab
