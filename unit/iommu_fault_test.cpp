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

TEST_F(SilentIommu, FaultInterruptNamedAfterTheUnit) {
  make("dmar1", "0x8086");
  EXPECT_EQ(iommu_fault_irq_name(bdf("0000:00:04.0"), root_), "dmar1");
  TearDown();
  make("virtio0", "0x1af4");
  EXPECT_EQ(iommu_fault_irq_name(bdf("0000:00:04.0"), root_), "virtio0-event");
  TearDown();
  make("0000:00:01.0", "0x1af4");  // not a virtio-iommu's place (below a virtio device)
  EXPECT_FALSE(iommu_fault_irq_name(bdf("0000:00:04.0"), root_));
  TearDown();
  make("ivhd0", "0x1022");  // AMD-Vi's event log interrupt carries more than faults
  EXPECT_FALSE(iommu_fault_irq_name(bdf("0000:00:04.0"), root_));
  EXPECT_FALSE(iommu_fault_irq_name(bdf("0000:00:05.0"), root_));  // no such device
}

TEST(FaultInterrupt, VirtioIommuNamedAfterItsPciFunction) {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("vfiolab-viommu-" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path unit = root / "devices/pci0000:00/0000:00:01.0/virtio0/iommu/0000:00:01.0";
  fs::create_directories(unit);
  const fs::path dev = root / "bus/pci/devices/0000:00:04.0";
  fs::create_directories(dev);
  fs::create_directory_symlink(unit, dev / "iommu");
  EXPECT_EQ(iommu_fault_irq_name(bdf("0000:00:04.0"), root), "virtio0-event");
  fs::remove_all(root);
}

// /proc/interrupts as a two-CPU x86 guest shows it.
constexpr std::string_view kInterrupts =
    "           CPU0       CPU1       \n"
    "  0:         36          0   IO-APIC   2-edge      timer\n"
    " 24:          3          4  DMAR-MSI    0-edge      dmar0\n"
    " 25:         10          0  PCI-MSIX-0000:00:03.0   0-edge      virtio0-config\n"
    " 26:          7          1  PCI-MSIX-0000:00:03.0   1-edge      virtio0-request\n"
    " 27:          2          0  PCI-MSIX-0000:00:03.0   2-edge      virtio0-event\n"
    " 11:          5          5   IO-APIC  11-fasteoi   uhci_hcd:usb1, dmar0x, virtio0-event\n"
    "NMI:          0          0   Non-maskable interrupts\n"
    "ERR:          0\n";

TEST(InterruptCount, SumsEveryCpuOfTheLinesThatNameIt) {
  EXPECT_EQ(interrupt_count(kInterrupts, "dmar0"), 7u);
  EXPECT_EQ(interrupt_count(kInterrupts, "virtio0-event"), 12u);  // its own line and a shared one
  EXPECT_EQ(interrupt_count(kInterrupts, "timer"), 36u);
}

TEST(InterruptCount, NothingForANameNoLineCarries) {
  EXPECT_FALSE(interrupt_count(kInterrupts, "dmar1"));
  EXPECT_FALSE(interrupt_count(kInterrupts, "virtio0"));  // a prefix of names is not a name
  EXPECT_FALSE(interrupt_count(kInterrupts, "IO-APIC"));  // a chip
  EXPECT_FALSE(interrupt_count(kInterrupts, "Non-maskable"));
  EXPECT_FALSE(interrupt_count("", "dmar0"));
}

}  // namespace
}  // namespace vfiolab
