#include "check.h"
#include "vfiolab/sysfs.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <unistd.h>

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

// A getter's value, or a failure naming its error.
template <typename T>
T value_of(Result<T> result) {
  EXPECT_TRUE(result) << result.error();
  return result ? std::move(*result) : T{};
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
  EXPECT_TRUE(check(sysfs.exists(bdf)));
  EXPECT_EQ(value_of(sysfs.vendor(bdf)), 0x1234);
  EXPECT_EQ(value_of(sysfs.device_id(bdf)), 0x11e8);
  EXPECT_EQ(value_of(sysfs.driver(bdf)), "vfio-pci");
  EXPECT_EQ(value_of(sysfs.iommu_group(bdf)), 5);
  EXPECT_EQ(value_of(sysfs.vfio_cdev(bdf)), "vfio3");
  EXPECT_EQ(value_of(sysfs.sriov_numvfs(bdf)), 2u);
  EXPECT_EQ(value_of(sysfs.sriov_totalvfs(bdf)), 7u);
  auto members = value_of(sysfs.iommu_group_members(5));
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
  EXPECT_EQ(value_of(sysfs.sriov_vf(pf_bdf, 1)), parse_bdf("0000:00:14.2").value());
  EXPECT_EQ(value_of(sysfs.sriov_vf(pf_bdf, 0)), std::nullopt);
  EXPECT_EQ(value_of(sysfs.sriov_pf(*parse_bdf("0000:00:14.2"))), pf_bdf);
  EXPECT_EQ(value_of(sysfs.sriov_pf(pf_bdf)), std::nullopt);
}

// A device folder that cannot be looked at (here a link loop, ELOOP; in
// the kernel's error paths an ENOMEM) is neither there nor absent: an error
// naming the folder (vfio-setup restore dropped a device's state on it).
TEST_F(FakeSysfs, ExistsReportsAFolderItCannotLookAt) {
  Sysfs sysfs(root_);
  const fs::path loop = root_ / "bus/pci/devices/0000:00:06.0";
  fs::create_symlink(loop, loop);
  auto present = sysfs.exists(*parse_bdf("0000:00:06.0"));
  ASSERT_FALSE(present);
  EXPECT_EQ(present.error().errnum, ELOOP);
  EXPECT_NE(present.error().message().find(loop.string()), std::string::npos) << present.error().message();
}

// No driver, group, cdev or SR-IOV is a state, not an error; IDs that
// cannot be there are an error (ENOENT), as is a group that does not exist.
TEST_F(FakeSysfs, AbsentDeviceGivesNothing) {
  Sysfs sysfs(root_);
  Bdf bdf = *parse_bdf("0000:00:05.0");
  EXPECT_FALSE(check(sysfs.exists(bdf)));
  ASSERT_FALSE(sysfs.vendor(bdf));
  EXPECT_EQ(sysfs.vendor(bdf).error().errnum, ENOENT);
  EXPECT_EQ(value_of(sysfs.driver(bdf)), std::nullopt);
  EXPECT_EQ(value_of(sysfs.iommu_group(bdf)), std::nullopt);
  EXPECT_EQ(value_of(sysfs.vfio_cdev(bdf)), std::nullopt);
  EXPECT_EQ(value_of(sysfs.sriov_numvfs(bdf)), std::nullopt);
  EXPECT_EQ(value_of(sysfs.sriov_totalvfs(bdf)), std::nullopt);
  ASSERT_FALSE(sysfs.iommu_group_members(99));
  EXPECT_EQ(sysfs.iommu_group_members(99).error().errnum, ENOENT);
}

// The error of a getter that should have failed: it names `file` and has
// errno `errnum` (0 for text that is malformed).
void expect_error_about(const Error& error, const fs::path& file, int errnum) {
  EXPECT_EQ(error.errnum, errnum) << error;
  EXPECT_NE(error.message().find(file.string()), std::string::npos) << error << " does not name " << file;
}

// Files that exist but cannot be read (a directory where the attribute
// should be: read() answers EISDIR, even to root) are errors, never "absent".
TEST_F(FakeSysfs, UnreadableAttributesAreErrorsNamingTheFile) {
  Sysfs sysfs(root_);
  const fs::path dev = root_ / "bus/pci/devices/0000:00:04.0";
  const Bdf bdf = *parse_bdf("0000:00:04.0");
  for (const char* name : {"vendor", "sriov_numvfs"}) {
    fs::remove(dev / name);
    fs::create_directory(dev / name);
  }
  auto vendor = sysfs.vendor(bdf);
  ASSERT_FALSE(vendor);
  expect_error_about(vendor.error(), dev / "vendor", EISDIR);
  auto numvfs = sysfs.sriov_numvfs(bdf);
  ASSERT_FALSE(numvfs);
  expect_error_about(numvfs.error(), dev / "sriov_numvfs", EISDIR);

  // A `driver` that is no link (readlink: EINVAL), a `vfio-dev` that is no
  // directory (ENOTDIR).
  fs::remove(dev / "driver");
  std::ofstream(dev / "driver") << "vfio-pci\n";
  auto driver = sysfs.driver(bdf);
  ASSERT_FALSE(driver);
  expect_error_about(driver.error(), dev / "driver", EINVAL);
  fs::remove_all(dev / "vfio-dev");
  std::ofstream(dev / "vfio-dev") << "";
  auto cdev = sysfs.vfio_cdev(bdf);
  ASSERT_FALSE(cdev);
  expect_error_about(cdev.error(), dev / "vfio-dev", ENOTDIR);
}

TEST_F(FakeSysfs, MalformedAttributesAreErrorsNamingTheFile) {
  Sysfs sysfs(root_);
  const fs::path dev = root_ / "bus/pci/devices/0000:00:04.0";
  const Bdf bdf = *parse_bdf("0000:00:04.0");
  std::ofstream(dev / "vendor") << "0x12345\n";
  std::ofstream(dev / "device") << "11e8\n";
  std::ofstream(dev / "sriov_totalvfs") << "seven\n";
  fs::remove(dev / "iommu_group");
  fs::create_directory_symlink("../../../kernel/iommu_groups/five", dev / "iommu_group");
  fs::create_directory_symlink("../not-a-device", dev / "virtfn0");

  auto vendor = sysfs.vendor(bdf);
  ASSERT_FALSE(vendor);
  expect_error_about(vendor.error(), dev / "vendor", 0);
  EXPECT_NE(vendor.error().message().find("'0x12345'"), std::string::npos) << vendor.error();
  auto device = sysfs.device_id(bdf);
  ASSERT_FALSE(device);
  expect_error_about(device.error(), dev / "device", 0);
  auto total = sysfs.sriov_totalvfs(bdf);
  ASSERT_FALSE(total);
  expect_error_about(total.error(), dev / "sriov_totalvfs", 0);
  auto group = sysfs.iommu_group(bdf);
  ASSERT_FALSE(group);
  expect_error_about(group.error(), dev / "iommu_group", 0);
  auto vf = sysfs.sriov_vf(bdf, 0);
  ASSERT_FALSE(vf);
  expect_error_about(vf.error(), dev / "virtfn0", 0);
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
