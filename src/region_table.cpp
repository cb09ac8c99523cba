#include "vfiolab/region_table.h"

#include <fmt/format.h>

#include <cerrno>
#include <iterator>

namespace vfiolab {

const DmaRegion* RegionTable::find(const void* vaddr) const {
  const std::uintptr_t address = key(vaddr);
  auto after = regions_.upper_bound(address);
  if (after == regions_.begin()) return nullptr;
  const auto& [start, region] = *std::prev(after);
  return address - start < region.size ? &region : nullptr;
}

void RegionTable::erase_within(std::uint64_t iova, std::uint64_t size) {
  std::erase_if(regions_, [&](const auto& entry) {
    const DmaRegion& region = entry.second;
    // Compared as offsets from iova, so that no end wraps at the top of the space.
    return region.iova >= iova && region.iova - iova <= size && region.size <= size - (region.iova - iova);
  });
}

Result<std::uint64_t> RegionTable::to_iova(const void* vaddr) const {
  if (const DmaRegion* region = find(vaddr)) {
    return region->iova + (key(vaddr) - key(region->vaddr));
  }
  return std::unexpected(make_error(ENOENT, "to_iova", fmt::format("{} is in no mapped region", vaddr)));
}

}  // namespace vfiolab
