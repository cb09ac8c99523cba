// vfio_dma_mapping_mmio_test: mapping a BAR's mmap into the IOMMU (the path
// peer-to-peer DMA takes). VFIO type1 follows the PFN map and allows it;
// iommufd pins pages and a BAR has none to pin, so it refuses, in native and
// compatibility modes alike. The BAR used is the device's largest mmap'd one,
// mapped once where the library put it (aligned to its size) and once at an
// address aligned to a page only.
#include "device.h"
#include "scope_exit.h"

#include "vfiolab/iommu_page_table.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

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
    // The largest BAR that is mapped whole and both readable and writable
    // (the IOMMU mapping is read-write, so the region must be too).
    for (std::uint32_t index = 0; index < PciDevice::kBarCount; ++index) {
      const Bar& candidate = device_->bar(index);
      if (!candidate.address() || !candidate.info.readable() || !candidate.info.writable()) continue;
      if (candidate.info.size < 2 * 4096) continue;
      if (bar_ == nullptr || candidate.info.size > bar_->info.size) bar_ = &candidate;
    }
    if (bar_ == nullptr) GTEST_SKIP() << device_->name() << " has no mmap'd read-write BAR of two pages or more";
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

// The BAR mmap'd a second time at an address one page past a 1 GiB
// boundary: page aligned, but aligned to nothing larger, so neither the CPU
// mapping nor the IOMMU mapping can use a huge page for it and type1 must
// walk the PFN map page by page. Type1 maps it: the IOMMU's page table then
// translates its first and last IOVA, the second mapping reads the same
// registers as the first, and the unmap takes back the whole size. iommufd
// refuses it as it refuses the aligned one.
TEST_P(MmioMappingTest, map_bar_misaligned) {
  constexpr std::uint64_t kAlign = 1ull << 30;
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t size = std::min<std::uint64_t>(bar_->info.size, kAlign);
  // Reserve enough to hold the range at any 1 GiB boundary plus a page,
  // then give back all of the reservation but that range.
  const std::uint64_t reserve = size + kAlign;
  void* reserved = ::mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(reserved, MAP_FAILED) << "reserving " << reserve << " bytes: " << std::strerror(errno);
  const auto base = reinterpret_cast<std::uintptr_t>(reserved);
  const std::uintptr_t start = ((base + kAlign - page) & ~(kAlign - 1)) + page;  // in (base, base + kAlign]
  if (start > base) ::munmap(reserved, start - base);
  ::munmap(reinterpret_cast<void*>(start + size), base + reserve - (start + size));
  void* mapped = ::mmap(reinterpret_cast<void*>(start), size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                        device_->fd(), static_cast<off_t>(bar_->info.offset));
  if (mapped == MAP_FAILED) {
    const int err = errno;
    ::munmap(reinterpret_cast<void*>(start), size);
    FAIL() << fmt::format("mmap of BAR{} at {:#x}: {}", bar_->index, start, std::strerror(err));
  }
  auto unmap_bar = ScopeExit([&] { ::munmap(mapped, size); });
  // The premise: page aligned, misaligned for any larger page the BAR could use.
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(mapped) % page, 0u);
  ASSERT_NE(reinterpret_cast<std::uintptr_t>(mapped) % std::bit_ceil(size), 0u)
      << fmt::format("{} is aligned to the BAR's size {:#x}", mapped, size);

  // Both mappings reach the same registers. (The first words only: no lab
  // device has a register there that changes or clears on read.)
  constexpr std::size_t kWords = 4;
  for (std::size_t i = 0; i < kWords; ++i) {
    const std::uint32_t first = static_cast<volatile std::uint32_t*>(bar_->address())[i];
    const std::uint32_t second = static_cast<volatile std::uint32_t*>(mapped)[i];
    EXPECT_EQ(second, first) << fmt::format("BAR{} offset {:#x}: misaligned mapping {:#x}, aligned mapping {:#x}",
                                            bar_->index, 4 * i, second, first);
  }

  DmaRegion region = bar_region(0, size);
  region.vaddr = mapped;
  if (!is_type1(GetParam())) {
    VFIOLAB_EXPECT_ERRNO(iommu_->map(region), EFAULT);
    return;
  }
  VFIOLAB_ASSERT_OK(iommu_->map(region));
  auto unmap_dma = ScopeExit([&] { (void)iommu_->unmap(region.iova, region.size); });
  // What the IOMMU's page table holds, where its driver shows it.
  for (std::uint64_t iova : {region.iova, region.iova + size - 1}) {
    auto leaf = iommu_leaf_for(device_->bdf(), iova);
    if (!leaf && leaf.error().unsupported) break;
    EXPECT_TRUE(leaf) << fmt::format("iova {:#x} of the BAR mapping is not in the IOMMU page table: {}", iova,
                                     leaf ? std::string() : leaf.error().message());
  }
  EXPECT_EQ(check(iommu_->unmap(region.iova, region.size)), size) << "the unmap did not take back the whole BAR";
  unmap_dma.dismiss();
  auto gone = iommu_leaf_for(device_->bdf(), region.iova);
  if (gone || !gone.error().unsupported) {
    EXPECT_FALSE(gone) << fmt::format("iova {:#x} is still in the IOMMU page table after the unmap", region.iova);
  }
}

INSTANTIATE_TEST_SUITE_P(vfio_dma_mapping_mmio_test, MmioMappingTest, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);

}  // namespace
}  // namespace vfiolab
