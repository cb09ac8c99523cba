// vfio_pci_device_test: a device's config space, BARs, reset and interrupts
// through vfio-pci, in the IOMMU mode chosen with -m (default iommufd).
#include "device.h"

#include "vfiolab/capabilities.h"
#include "vfiolab/sysfs.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <set>

namespace vfiolab {
namespace {

using namespace std::chrono_literals;

constexpr std::uint16_t kCommandBusMaster = 1u << 2;
constexpr std::uint32_t kMaxVectors = 16;

class vfio_pci_device_test : public testing::Test {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(harness::iommu_mode()));
    VFIOLAB_ASSIGN_OR_SKIP(opened, PciDevice::open(harness::device_bdf(), iommu));
    device_ = std::move(opened);
  }
  std::unique_ptr<PciDevice> device_;
};

TEST_F(vfio_pci_device_test, config_space_read_write) {
  Sysfs sysfs;
  EXPECT_EQ(device_->vendor_id(), check(sysfs.vendor(device_->bdf())));
  EXPECT_EQ(device_->device_id(), check(sysfs.device_id(device_->bdf())));

  const std::uint16_t original = check(device_->command());
  VFIOLAB_ASSERT_OK(device_->set_bus_master(true));
  EXPECT_TRUE(check(device_->command()) & kCommandBusMaster);
  VFIOLAB_ASSERT_OK(device_->set_bus_master(false));
  EXPECT_FALSE(check(device_->command()) & kCommandBusMaster);
  VFIOLAB_ASSERT_OK(device_->config_write<std::uint16_t>(0x04, original));
  EXPECT_EQ(check(device_->command()), original);
}

// A device comes out of the open with bus mastering off: it can start no
// DMA before the user enables it. (PciDevice::open reads config space and
// writes none of it.)
TEST_F(vfio_pci_device_test, bus_master_off_after_open) {
  const std::uint16_t command = check(device_->command());
  EXPECT_FALSE(command & kCommandBusMaster)
      << fmt::format("{} has bus mastering on right after the open (command {:#06x})", device_->name(), command);
}

// The config region is reached through read and write only: vfio-pci
// virtualizes parts of it, so it never offers it for mmap, and an mmap of
// the device fd at its offset fails (vfio-pci's mmap takes the BARs only).
TEST_F(vfio_pci_device_test, config_region_not_mmappable) {
  const auto config = check(device_->region_info(VFIO_PCI_CONFIG_REGION_INDEX));
  EXPECT_FALSE(config.mmappable()) << "the config region's flags " << config.flags
                                   << " have VFIO_REGION_INFO_FLAG_MMAP";
  const auto length = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* mapped = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, device_->fd(), static_cast<off_t>(config.offset));
  const int err = errno;
  if (mapped != MAP_FAILED) {
    ::munmap(mapped, length);
    ADD_FAILURE() << fmt::format("mmap of the config region (offset {:#x}) succeeded", config.offset);
  } else {
    EXPECT_EQ(err, EINVAL) << "mmap of the config region: " << std::strerror(err) << "; expected EINVAL";
  }
}

TEST_F(vfio_pci_device_test, validate_bars) {
  int present = 0;
  for (std::uint32_t index = 0; index < PciDevice::kBarCount; ++index) {
    const Bar& bar = device_->bar(index);
    if (bar.info.size == 0) continue;
    ++present;
    if (!bar.info.mmappable() || !bar.info.sparse_areas.empty()) continue;
    ASSERT_NE(bar.address(), nullptr) << "BAR" << index << " is mmap-able but was not mapped";
    // A read through the mapping must reach the device without a fault.
    volatile std::uint32_t first = *static_cast<volatile std::uint32_t*>(bar.address());
    (void)first;
    // Mapped at an address aligned for huge mappings.
    std::uint64_t alignment = std::min<std::uint64_t>(std::bit_ceil(bar.info.size), 1ull << 30);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(bar.address()) % alignment, 0u) << "BAR" << index;
  }
  EXPECT_GT(present, 0) << "the device reports no BAR";
}

// A register of the device's own (in a BAR: the kernel saves and restores
// config space around a reset) that its reset must set back, and a value
// that differs from the reset value and that the register keeps.
struct ResetWitness {
  const char* name;
  std::uint32_t bar;
  std::uint32_t offset;
  std::uint32_t written;
  std::uint32_t after_reset;
};

std::optional<ResetWitness> reset_witness(const PciDevice& device) {
  constexpr std::uint32_t kClassNvme = 0x010802;
  constexpr std::uint16_t kIntel = 0x8086;
  // NVMe: Controller Configuration with the queue entry sizes set and EN
  // clear (so the controller does not start), 0 after a controller reset.
  if (device.class_code() == kClassNvme) return ResetWitness{"NVMe CC", 0, 0x14, 0x00460000, 0};
  // Intel 82574 (e1000e) and 82576 (igb): receive descriptor ring 0's base
  // address, low half (bits 3:0 read as zero), 0 after a device reset.
  if (device.vendor_id() == kIntel && device.device_id() == 0x10d3) {
    return ResetWitness{"82574 RDBAL(0)", 0, 0x2800, 0x12345000, 0};
  }
  if (device.vendor_id() == kIntel && device.device_id() == 0x10c9) {
    return ResetWitness{"82576 RDBAL(0)", 0, 0xc000, 0x12345000, 0};
  }
  return std::nullopt;
}

// The reset is judged by what it did to the device: a register the reset
// must clear holds a written value before it and its reset value after.
TEST_F(vfio_pci_device_test, reset) {
  if (!device_->has_reset()) GTEST_SKIP() << device_->name() << " has no reset (VFIO_DEVICE_FLAGS_RESET clear)";
  const auto witness = reset_witness(*device_);
  if (!witness) {
    VFIOLAB_ASSERT_OK(device_->reset());
    GTEST_SKIP() << fmt::format("VFIO_DEVICE_RESET returned 0, but no register is known that the reset of "
                                "{:04x}:{:04x} must clear, so its effect is not judged",
                                device_->vendor_id(), device_->device_id());
  }
  auto read = [&] {
    std::uint32_t value = 0;
    VFIOLAB_EXPECT_OK(device_->region_read(witness->bar, witness->offset, &value, sizeof(value)));
    return value;
  };
  VFIOLAB_ASSERT_OK(device_->region_write(witness->bar, witness->offset, &witness->written, sizeof(witness->written)));
  // The premise: without a reset the check below fails.
  ASSERT_EQ(read(), witness->written) << witness->name << " did not keep the value written to it";
  VFIOLAB_ASSERT_OK(device_->reset());
  EXPECT_EQ(read(), witness->after_reset)
      << fmt::format("{} at BAR{} {:#x} still holds {:#x} after VFIO_DEVICE_RESET: the reset did not reset the device",
                     witness->name, witness->bar, witness->offset, witness->written);
}

// What VFIO reports about the device's regions against what the PCI core
// reports in sysfs: each BAR's size (0 for one the device lacks), an I/O
// BAR never mmap-able, a memory BAR readable and writable, the ROM's size,
// and the config region as large as the config space sysfs serves.
TEST_F(vfio_pci_device_test, regions_agree_with_sysfs) {
  Sysfs sysfs;
  const auto resources = check(sysfs.resources(device_->bdf()));
  ASSERT_GT(resources.size(), std::size_t{VFIO_PCI_ROM_REGION_INDEX}) << "the resource file has no ROM line";
  for (std::uint32_t index = 0; index <= VFIO_PCI_ROM_REGION_INDEX; ++index) {
    const auto region = check(device_->region_info(index));
    const PciResource& resource = resources[index];
    EXPECT_EQ(region.size, resource.size())
        << fmt::format("region {}: VFIO reports {:#x} bytes, sysfs {:#x}..{:#x}", index, region.size, resource.start,
                       resource.end);
    if (index == VFIO_PCI_ROM_REGION_INDEX || resource.size() == 0) continue;
    if (resource.io()) {
      EXPECT_FALSE(region.mmappable()) << "I/O BAR" << index << " is reported mmap-able";
    }
    if (resource.mem()) {
      EXPECT_TRUE(region.readable() && region.writable()) << "memory BAR" << index << " flags " << region.flags;
    }
  }
  const auto config = check(sysfs.config(device_->bdf()));
  const auto config_region = check(device_->region_info(VFIO_PCI_CONFIG_REGION_INDEX));
  EXPECT_EQ(config_region.size, config.size()) << "the config region's size differs from sysfs' config file";
}

// The identity registers read through VFIO's config region against the same
// bytes of sysfs' config file: vendor and device, revision and class, header
// type, subsystem. (vfio-pci virtualizes the BARs, the command register and
// others, which are left out.)
TEST_F(vfio_pci_device_test, config_identity_agrees_with_sysfs) {
  const auto config = check(Sysfs().config(device_->bdf()));
  ASSERT_GE(config.size(), 64u);
  struct Field {
    std::uint32_t offset, size;
    const char* name;
  };
  for (const Field& f : {Field{0x00, 4, "vendor and device"}, Field{0x08, 4, "revision and class"},
                         Field{0x0e, 1, "header type"}, Field{0x2c, 4, "subsystem"}}) {
    std::uint32_t vfio = 0, pci = 0;
    check(device_->config_read(f.offset, &vfio, f.size));
    std::memcpy(&pci, config.data() + f.offset, f.size);
    EXPECT_EQ(vfio, pci) << fmt::format("{} at {:#x}: VFIO {:#x}, sysfs {:#x}", f.name, f.offset, vfio, pci);
  }
}

// The capabilities VFIO's config space shows against those in sysfs' config
// file: vfio-pci may hide a capability (it unlinks it from the chain), but
// each one it shows must be the device's own, with that ID at that offset.
TEST_F(vfio_pci_device_test, capabilities_agree_with_sysfs) {
  const auto config = check(Sysfs().config(device_->bdf()));
  struct List {
    const char* name;
    std::vector<PciCapability> vfio;
    std::vector<PciCapability> pci;
  };
  for (const List& list :
       {List{"standard", check(device_->capabilities()), check(walk_pci_capabilities(config))},
        List{"extended", check(device_->ext_capabilities()), check(walk_pci_ext_capabilities(config))}}) {
    for (const PciCapability& cap : list.vfio) {
      if (cap.id == 0) continue;  // a hidden first extended capability leaves an ID-0 header
      const bool found = std::any_of(list.pci.begin(), list.pci.end(), [&](const PciCapability& p) {
        return p.id == cap.id && p.offset == cap.offset;
      });
      EXPECT_TRUE(found) << fmt::format("{} capability {:#x} at {:#x}, as VFIO shows it, is not in sysfs' config",
                                        list.name, cap.id, cap.offset);
    }
  }
  // And those vfio-pci always passes through are not hidden: power
  // management, MSI, PCI Express, MSI-X.
  const auto pci = check(walk_pci_capabilities(config));
  const auto vfio = check(device_->capabilities());
  for (const PciCapability& cap : pci) {
    if (cap.id != 0x01 && cap.id != 0x05 && cap.id != 0x10 && cap.id != 0x11) continue;
    EXPECT_TRUE(std::any_of(vfio.begin(), vfio.end(), [&](const PciCapability& v) { return v.id == cap.id; }))
        << fmt::format("capability {:#x} at {:#x} is in sysfs' config but not in VFIO's", cap.id, cap.offset);
  }
}

// VFIO's interrupt counts against the capabilities in sysfs' config file:
// MSI as many vectors as the MSI capability's Multiple Message Capable field
// (none without the capability), MSI-X its table size, INTx one when the
// interrupt pin VFIO shows is set.
TEST_F(vfio_pci_device_test, irq_counts_agree_with_capabilities) {
  const auto config = check(Sysfs().config(device_->bdf()));
  const auto caps = check(walk_pci_capabilities(config));
  auto control = [&](std::uint8_t id) -> std::optional<std::uint16_t> {
    for (const auto& cap : caps) {
      if (cap.id != id) continue;
      std::uint16_t value = 0;
      std::memcpy(&value, config.data() + cap.offset + 2, 2);
      return value;
    }
    return std::nullopt;
  };
  auto count = [&](IrqIndex index) {
    auto info = device_->irq_info(index);
    VFIOLAB_EXPECT_OK(info);
    return info ? info->count : 0;
  };
  constexpr std::uint8_t kMsi = 0x05, kMsix = 0x11;
  const auto msi = control(kMsi);
  EXPECT_EQ(count(IrqIndex::msi), msi ? 1u << ((*msi >> 1) & 0x7) : 0u) << "MSI";
  const auto msix = control(kMsix);
  EXPECT_EQ(count(IrqIndex::msix), msix ? (*msix & 0x7ffu) + 1 : 0u) << "MSI-X";
  const auto pin = check(device_->config_read<std::uint8_t>(0x3d));
  EXPECT_EQ(count(IrqIndex::intx), pin != 0 ? 1u : 0u) << "INTx, interrupt pin " << unsigned(pin);
}

// The first registers of each mmap-ed BAR read through the mapping and
// through pread on the device fd: both reach the same registers. (Sixteen
// bytes: no lab device has a register there that changes or clears on read.)
// A BAR whose MSI-X table or PBA starts in those bytes is left out: vfio-pci
// serves reads of those through pread as all ones by design, while the
// mapping shows them.
TEST_F(vfio_pci_device_test, bar_reads_agree_across_access_methods) {
  constexpr std::size_t kWords = 4;
  constexpr std::uint8_t kMsix = 0x11;
  std::set<std::uint32_t> msix_bars;
  if (auto msix = check(device_->find_capability(kMsix))) {
    for (std::uint32_t at : {4u, 8u}) {  // table and PBA: offset | BIR
      const auto where = check(device_->config_read<std::uint32_t>(*msix + at));
      if ((where & ~7u) < kWords * 4) msix_bars.insert(where & 7u);
    }
  }
  int compared = 0;
  for (std::uint32_t index = 0; index < PciDevice::kBarCount; ++index) {
    const Bar& bar = device_->bar(index);
    if (bar.address() == nullptr || bar.info.size < kWords * 4 || msix_bars.contains(index)) continue;
    std::uint32_t mapped[kWords], read[kWords];
    for (std::size_t i = 0; i < kWords; ++i) mapped[i] = static_cast<volatile std::uint32_t*>(bar.address())[i];
    for (std::size_t i = 0; i < kWords; ++i) {
      ASSERT_EQ(::pread(device_->fd(), &read[i], 4, static_cast<off_t>(bar.info.offset + 4 * i)), 4)
          << "pread of BAR" << index << ": " << std::strerror(errno);
    }
    for (std::size_t i = 0; i < kWords; ++i) {
      EXPECT_EQ(mapped[i], read[i]) << fmt::format("BAR{} offset {:#x}: mmap {:#x}, pread {:#x}", index, 4 * i,
                                                   mapped[i], read[i]);
    }
    ++compared;
  }
  if (compared == 0) GTEST_SKIP() << device_->name() << " has no mmap-ed BAR to read both ways";
}

class IrqTest : public testing::TestWithParam<IrqIndex> {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(harness::iommu_mode()));
    VFIOLAB_ASSIGN_OR_SKIP(opened, PciDevice::open(harness::device_bdf(), iommu));
    device_ = std::move(opened);
    const auto info = check(device_->irq_info(GetParam()));
    if (info.count == 0) GTEST_SKIP() << device_->name() << " has no " << irq_index_name(GetParam());
    vectors_ = std::min(info.count, kMaxVectors);
  }

  void expect_each_vector_fires_once() {
    for (std::uint32_t v = 0; v < vectors_; ++v) {
      const auto before = check(device_->irq_eventfd(v).read());
      EXPECT_FALSE(before.has_value()) << "vector " << v << " fired before its trigger";
      VFIOLAB_ASSERT_OK(device_->trigger_irq(GetParam(), v));
      const auto after = check(device_->irq_eventfd(v).wait(1s));
      EXPECT_EQ(after.value_or(0), 1u) << "vector " << v;
    }
  }

  std::unique_ptr<PciDevice> device_;
  std::uint32_t vectors_ = 0;
};

TEST_P(IrqTest, enable_trigger_disable) {
  VFIOLAB_ASSERT_OK(device_->enable_irqs(GetParam(), vectors_));
  expect_each_vector_fires_once();
  VFIOLAB_EXPECT_OK(device_->disable_irqs(GetParam()));
  EXPECT_FALSE(device_->enabled_irq_index());
}

TEST_P(IrqTest, trigger_after_reset) {
  if (!device_->has_reset()) GTEST_SKIP() << device_->name() << " has no reset (VFIO_DEVICE_FLAGS_RESET clear)";
  VFIOLAB_ASSERT_OK(device_->enable_irqs(GetParam(), vectors_));
  VFIOLAB_ASSERT_OK(device_->reset());
  expect_each_vector_fires_once();
  VFIOLAB_EXPECT_OK(device_->disable_irqs(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(vfio_pci_irq_test, IrqTest, testing::Values(IrqIndex::intx, IrqIndex::msi, IrqIndex::msix),
                         [](const testing::TestParamInfo<IrqIndex>& info) {
                           switch (info.param) {
                             case IrqIndex::intx: return "intx";
                             case IrqIndex::msi: return "msi";
                             case IrqIndex::msix: return "msix";
                           }
                           return "unknown";
                         });

}  // namespace
}  // namespace vfiolab
