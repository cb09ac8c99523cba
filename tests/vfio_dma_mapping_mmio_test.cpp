// vfio_dma_mapping_mmio_test: mapping a BAR's mmap into the IOMMU (the path
// peer-to-peer DMA takes). VFIO type1 follows the PFN map and allows it;
// iommufd pins pages and a BAR has none to pin, so it refuses, in native and
// compatibility modes alike.
#include "device.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cerrno>

namespace vfiolab {
namespace {

bool is_type1(IommuMode mode) { return mode == IommuMode::vfio_type1_iommu || mode == IommuMode::vfio_type1v2_iommu; }

class MmioMappingTest : public testing::TestWithParam<IommuMode> {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(GetParam()));
    VFIOLAB_ASSIGN_OR_SKIP(device, PciDevice::open(harness::device_bdf(), iommu));
    iommu_ = std::move(iommu);
    device_ = std::move(device);
    for (std::uint32_t index = 0; index < PciDevice::kBarCount; ++index) {
      const Bar& candidate = device_->bar(index);
      if (candidate.address() && candidate.info.size >= 2 * 4096) {
        bar_ = &candidate;
        break;
      }
    }
    if (bar_ == nullptr) GTEST_SKIP() << device_->name() << " has no mmap'd BAR of two pages or more";
    allocator_.emplace(check(iommu_->iova_allocator()));
  }

  DmaRegion bar_region(std::uint64_t offset, std::uint64_t size) {
    std::uint64_t block = std::bit_ceil(std::max<std::uint64_t>(size, 4096));
    auto iova = allocator_->allocate(block);
    VFIOLAB_EXPECT_OK(iova);
    return DmaRegion{static_cast<std::byte*>(bar_->address()) + offset, iova.value_or(0), size};
  }

  void expect_mapping(const DmaRegion& region, int refused_errno) {
    if (is_type1(GetParam())) {
      check(iommu_->map(region));
      EXPECT_EQ(check(iommu_->unmap(region.iova, region.size)), region.size);
    } else {
      VFIOLAB_EXPECT_ERRNO(iommu_->map(region), refused_errno);
    }
  }

  std::shared_ptr<Iommu> iommu_;
  std::unique_ptr<PciDevice> device_;
  const Bar* bar_ = nullptr;
  std::optional<IovaAllocator> allocator_;
};

TEST_P(MmioMappingTest, map_full_bar) {
  // iommufd cannot pin a PFN map: EFAULT from its page pinning.
  expect_mapping(bar_region(0, bar_->info.size), EFAULT);
}

TEST_P(MmioMappingTest, map_partial_bar) { expect_mapping(bar_region(0, bar_->info.size / 2), EFAULT); }

TEST_P(MmioMappingTest, map_bar_at_misaligned_address) {
  // Half a page into the BAR: no mode maps a host address that is not page
  // aligned at a page-aligned IOVA.
  DmaRegion region = bar_region(0x800, 4096);
  VFIOLAB_EXPECT_ERRNO(iommu_->map(region), EINVAL);
}

INSTANTIATE_TEST_SUITE_P(vfio_dma_mapping_mmio_test, MmioMappingTest, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);

}  // namespace
}  // namespace vfiolab
