// The DMA regions an Iommu has mapped, by host address, and the lookup of
// the IOVA behind any host address inside one of them.
#pragma once

#include "vfiolab/error.h"

#include <cstdint>
#include <map>

namespace vfiolab {

// A mapping of host memory at an IOVA.
struct DmaRegion {
  void* vaddr = nullptr;
  std::uint64_t iova = 0;
  std::uint64_t size = 0;
};

class RegionTable {
 public:
  // Replaces any region that starts at the same host address.
  void insert(const DmaRegion& region) { regions_[key(region.vaddr)] = region; }
  void erase(const void* vaddr) { regions_.erase(key(vaddr)); }
  // Drops every region whose IOVAs lie wholly inside [iova, iova + size).
  void erase_within(std::uint64_t iova, std::uint64_t size);
  void clear() { regions_.clear(); }
  std::size_t size() const { return regions_.size(); }
  const std::map<std::uintptr_t, DmaRegion>& entries() const { return regions_; }

  // The region holding vaddr, found in O(log n); nullptr when none does.
  const DmaRegion* find(const void* vaddr) const;
  // The IOVA of vaddr; ENOENT when no region holds it.
  Result<std::uint64_t> to_iova(const void* vaddr) const;

 private:
  static std::uintptr_t key(const void* vaddr) { return reinterpret_cast<std::uintptr_t>(vaddr); }
  std::map<std::uintptr_t, DmaRegion> regions_;
};

}  // namespace vfiolab
