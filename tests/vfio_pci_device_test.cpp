// vfio_pci_device_test: a device's config space, BARs, reset and interrupts
// through vfio-pci, in the IOMMU mode chosen with -m (default iommufd).
#include "device.h"

#include "vfiolab/sysfs.h"

#include <algorithm>
#include <bit>
#include <chrono>

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
  EXPECT_EQ(device_->vendor_id(), sysfs.vendor(device_->bdf()));
  EXPECT_EQ(device_->device_id(), sysfs.device_id(device_->bdf()));

  const std::uint16_t original = device_->command();
  device_->set_bus_master(true);
  EXPECT_TRUE(device_->command() & kCommandBusMaster);
  device_->set_bus_master(false);
  EXPECT_FALSE(device_->command() & kCommandBusMaster);
  device_->config_write<std::uint16_t>(0x04, original);
  EXPECT_EQ(device_->command(), original);
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

TEST_F(vfio_pci_device_test, reset) {
  if (!device_->has_reset()) GTEST_SKIP() << device_->name() << " has no reset (VFIO_DEVICE_FLAGS_RESET clear)";
  auto reset = device_->try_reset();
  ASSERT_TRUE(reset) << reset.error().message();
  EXPECT_EQ(device_->vendor_id(), Sysfs().vendor(device_->bdf()));
}

class IrqTest : public testing::TestWithParam<IrqIndex> {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(harness::iommu_mode()));
    VFIOLAB_ASSIGN_OR_SKIP(opened, PciDevice::open(harness::device_bdf(), iommu));
    device_ = std::move(opened);
    auto info = device_->irq_info(GetParam());
    ASSERT_TRUE(info) << info.error().message();
    if (info->count == 0) GTEST_SKIP() << device_->name() << " has no " << irq_index_name(GetParam());
    vectors_ = std::min(info->count, kMaxVectors);
  }

  void expect_each_vector_fires_once() {
    for (std::uint32_t v = 0; v < vectors_; ++v) {
      auto before = device_->irq_eventfd(v).read();
      ASSERT_TRUE(before) << before.error().message();
      EXPECT_FALSE(*before) << "vector " << v << " fired before its trigger";
      device_->trigger_irq(GetParam(), v);
      auto after = device_->irq_eventfd(v).wait(1s);
      ASSERT_TRUE(after) << after.error().message();
      EXPECT_EQ(after->value_or(0), 1u) << "vector " << v;
    }
  }

  std::unique_ptr<PciDevice> device_;
  std::uint32_t vectors_ = 0;
};

TEST_P(IrqTest, enable_trigger_disable) {
  device_->enable_irqs(GetParam(), vectors_);
  expect_each_vector_fires_once();
  device_->disable_irqs(GetParam());
  EXPECT_FALSE(device_->enabled_irq_index());
}

TEST_P(IrqTest, trigger_after_reset) {
  if (!device_->has_reset()) GTEST_SKIP() << device_->name() << " has no reset (VFIO_DEVICE_FLAGS_RESET clear)";
  device_->enable_irqs(GetParam(), vectors_);
  device_->reset();
  expect_each_vector_fires_once();
  device_->disable_irqs(GetParam());
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
