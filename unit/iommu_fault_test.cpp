// Parsing the kernel's IOMMU fault messages (Intel VT-d, AMD-Vi,
// virtio-iommu) and matching them to a device and IOVA range.
#include "vfiolab/iommu_fault.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace vfiolab {
namespace {

Bdf bdf(std::string_view text) { return parse_bdf(text).value(); }

TEST(IommuFault, IntelDmaReadWithTimestamp) {
  auto fault = parse_iommu_fault(
      "[   12.345678] DMAR: [DMA Read NO_PASID] Request device [00:04.0] fault addr 0x7f000 [fault reason 0x06] "
      "PTE Read access is not set");
  ASSERT_TRUE(fault);
  EXPECT_EQ(fault->device, bdf("0000:00:04.0"));
  EXPECT_FALSE(fault->endpoint);
  EXPECT_EQ(fault->address, 0x7f000u);
}

TEST(IommuFault, IntelDmaWriteWithPasid) {
  auto fault = parse_iommu_fault(
      "DMAR: [DMA Write PASID 0x1] Request device [01:1f.7] fault addr 0xfffff000 [fault reason 0x05] PTE Write "
      "access is not set");
  ASSERT_TRUE(fault);
  EXPECT_EQ(fault->device, bdf("01:1f.7"));
  EXPECT_EQ(fault->address, 0xfffff000u);
}

TEST(IommuFault, IntelInterruptRemappingFaultIsNotADmaFault) {
  EXPECT_FALSE(parse_iommu_fault(
      "DMAR: [INTR-REMAP] Request device [00:04.0] fault index 0x2 [fault reason 0x25] Blocked a compatibility "
      "format interrupt request"));
}

TEST(IommuFault, AmdWithDevicePrefix) {
  auto fault = parse_iommu_fault(
      "vfio-pci 0000:00:05.0: Event logged [IO_PAGE_FAULT domain=0x0003 address=0x200000 flags=0x0020]");
  ASSERT_TRUE(fault);
  EXPECT_EQ(fault->device, bdf("0000:00:05.0"));
  EXPECT_EQ(fault->address, 0x200000u);
}

TEST(IommuFault, AmdWithoutDevice) {
  auto fault = parse_iommu_fault(
      "AMD-Vi: Event logged [IO_PAGE_FAULT device=0001:02:00.1 domain=0x0000 address=0xdeadb000 flags=0x0000]");
  ASSERT_TRUE(fault);
  EXPECT_EQ(fault->device, bdf("0001:02:00.1"));
  EXPECT_EQ(fault->address, 0xdeadb000u);
}

TEST(IommuFault, VirtioEndpoint) {
  auto fault = parse_iommu_fault("virtio_iommu virtio0: page fault from EP 32 at 0x41000 [W]");
  ASSERT_TRUE(fault);
  EXPECT_FALSE(fault->device);
  EXPECT_EQ(fault->endpoint, 32u);
  EXPECT_EQ(fault->address, 0x41000u);
  EXPECT_TRUE(fault_matches(*fault, bdf("0000:00:04.0"), 0x41000, 0x1000));  // RID 0x20 = 00:04.0
  EXPECT_FALSE(fault_matches(*fault, bdf("0000:00:05.0"), 0x41000, 0x1000));
}

TEST(IommuFault, VirtioFaultWithoutAddressIsNotUsable) {
  EXPECT_FALSE(parse_iommu_fault("virtio_iommu virtio0: domain fault from EP 40"));
}

TEST(IommuFault, UnrelatedAndMalformedLines) {
  for (std::string_view line : {
           "", "DMAR: IOMMU enabled", "[    0.1] pci 0000:00:04.0: [1234:11e8] type 00 class 0x00ff00",
           "DMAR: [DMA Read NO_PASID] Request device [zz:04.0] fault addr 0x1000",
           "DMAR: [DMA Read NO_PASID] Request device [00:04.0] fault addr xyz",
           "vfio-pci 0000:00:05.0: Event logged [IO_PAGE_FAULT domain=0x0003 flags=0x0020]",
           "Event logged [IO_PAGE_FAULT domain=0x0003 address=0x1000 flags=0x0020]",
           "virtio_iommu virtio0: page fault from EP 99999 at 0x1000 [R]",
       }) {
    EXPECT_FALSE(parse_iommu_fault(line)) << line;
  }
}

TEST(IommuFault, MatchesByDeviceAndPage) {
  auto fault = parse_iommu_fault("DMAR: [DMA Read NO_PASID] Request device [00:04.0] fault addr 0x13000 [fault reason 0x06] x");
  ASSERT_TRUE(fault);
  const Bdf edu = bdf("0000:00:04.0");
  EXPECT_TRUE(fault_matches(*fault, edu, 0x10000, 0x10000));
  EXPECT_TRUE(fault_matches(*fault, edu, 0x13abc, 1));  // the page of an unaligned IOVA
  EXPECT_TRUE(fault_matches(*fault, edu, 0x12fff, 2));  // a range reaching into the page
  EXPECT_FALSE(fault_matches(*fault, edu, 0x14000, 0x1000));
  EXPECT_FALSE(fault_matches(*fault, edu, 0x10000, 0x3000));
  EXPECT_FALSE(fault_matches(*fault, edu, 0x13000, 0));
  EXPECT_FALSE(fault_matches(*fault, bdf("0000:00:04.1"), 0x10000, 0x10000));
  EXPECT_FALSE(fault_matches(*fault, bdf("0000:01:04.0"), 0x10000, 0x10000));
  // Intel logs no segment: any segment's 00:04.0 matches.
  EXPECT_TRUE(fault_matches(*fault, bdf("0002:00:04.0"), 0x10000, 0x10000));
}

TEST(IommuFault, AmdMatchChecksTheSegment) {
  auto fault = parse_iommu_fault("AMD-Vi: Event logged [IO_PAGE_FAULT device=0001:00:04.0 domain=0x0 address=0x5000 flags=0x0]");
  ASSERT_TRUE(fault);
  EXPECT_TRUE(fault_matches(*fault, bdf("0001:00:04.0"), 0x5000, 0x1000));
  EXPECT_FALSE(fault_matches(*fault, bdf("0002:00:04.0"), 0x5000, 0x1000));
}

TEST(IommuFault, RangeAtTheTopOfTheIovaSpace) {
  auto fault = parse_iommu_fault("AMD-Vi: Event logged [IO_PAGE_FAULT device=0000:00:04.0 domain=0x0 address=0xfffffffffffff000 flags=0x0]");
  ASSERT_TRUE(fault);
  EXPECT_TRUE(fault_matches(*fault, bdf("0000:00:04.0"), 0xffffffffffffe000, 0x2000));
}

// A fake /sys with one device behind an IOMMU named `iommu` whose PCI
// function has subsystem vendor `subsystem`.
class SilentIommu : public testing::Test {
 protected:
  void make(const std::string& iommu, const std::string& subsystem) {
    namespace fs = std::filesystem;
    root_ = fs::temp_directory_path() / ("vfiolab-iommu-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    const fs::path unit = root_ / "devices/pci0000:00/0000:00:03.0";
    fs::create_directories(unit);
    std::ofstream(unit / "subsystem_vendor") << subsystem << "\n";
    fs::create_directories(root_ / "class/iommu" / iommu);
    fs::create_directory_symlink(unit, root_ / "class/iommu" / iommu / "device");
    const fs::path dev = root_ / "bus/pci/devices/0000:00:04.0";
    fs::create_directories(dev);
    fs::create_directory_symlink(root_ / "class/iommu" / iommu, dev / "iommu");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::filesystem::path root_;
};

TEST_F(SilentIommu, QemuAmdIommuIsKnownSilent) {
  make("ivhd0", "0x1af4");
  auto reason = iommu_logs_no_faults(bdf("0000:00:04.0"), root_);
  ASSERT_TRUE(reason);
  EXPECT_NE(reason->find("ivhd0"), std::string::npos) << *reason;
}

TEST_F(SilentIommu, RealAmdAndIntelIommusAreNot) {
  make("ivhd0", "0x1022");
  EXPECT_FALSE(iommu_logs_no_faults(bdf("0000:00:04.0"), root_));
  TearDown();
  make("dmar0", "0x1af4");
  EXPECT_FALSE(iommu_logs_no_faults(bdf("0000:00:04.0"), root_));
  EXPECT_FALSE(iommu_logs_no_faults(bdf("0000:00:05.0"), root_));  // no such device
}

// The window of Intel VT-d's fault-message rate limit, rebuilt from the log.
std::vector<LogRecord> intel_faults(std::initializer_list<std::uint64_t> seconds_tenths) {
  std::vector<LogRecord> records;
  records.push_back({0, "e1000e 0000:00:06.0: unrelated"});
  for (auto t : seconds_tenths) {
    records.push_back({t * 100'000, "DMAR: DRHD: handling fault status reg 2"});
    records.push_back({t * 100'000 + 10,
                       "DMAR: [DMA Read NO_PASID] Request device [00:04.0] fault addr 0x10000 [fault reason 0x06] "
                       "PTE Read access is not set"});
  }
  return records;
}

TEST(IntelFaultLogRateLimit, RoomWhileTheWindowHasSome) {
  // Two faults (six of the ten) in the window that began at 1.0 s: room for
  // one more fault's two messages.
  EXPECT_FALSE(intel_fault_log_full_until(intel_faults({10, 12}), 2'000'000, 2));
  // Nothing from the handler at all.
  EXPECT_FALSE(intel_fault_log_full_until({{5, "DMAR: IOMMU enabled"}}, 6, 2));
}

TEST(IntelFaultLogRateLimit, FullWindowEndsFiveSecondsAfterItsFirstMessage) {
  // Three faults cost nine: the next status line would be the tenth, and
  // its fault record suppressed.
  auto until = intel_fault_log_full_until(intel_faults({10, 12, 14}), 2'000'000, 2);
  ASSERT_TRUE(until);
  EXPECT_EQ(*until, 6'000'000u);
  // Once that time has passed, the next fault opens a new window.
  EXPECT_FALSE(intel_fault_log_full_until(intel_faults({10, 12, 14}), 6'000'000, 2));
}

TEST(IntelFaultLogRateLimit, WindowsAreRebuiltFromTheFirstMessageAfterEach) {
  // A full window from 1.0 s; at 6.5 s a new one begins (not at 6.0 s), and
  // by 8.0 s it is full again: it ends at 11.5 s.
  auto records = intel_faults({10, 11, 12, 13, 14, 65, 70, 75});
  auto until = intel_fault_log_full_until(records, 8'000'000, 2);
  ASSERT_TRUE(until);
  EXPECT_EQ(*until, 11'500'000u);
}

}  // namespace
}  // namespace vfiolab
