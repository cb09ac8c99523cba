// The IOMMU side of VFIO: one of five modes, the container or iommufd it
// owns, DMA mappings and the usable IOVA ranges. Several PciDevices may share
// one Iommu (hold it by shared_ptr), so one mapping serves them all.
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/iova_allocator.h"
#include "vfiolab/memory.h"
#include "vfiolab/region_table.h"
#include "vfiolab/unique_fd.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace vfiolab {

enum class IommuMode {
  vfio_type1_iommu,        // /dev/vfio/vfio, VFIO_TYPE1_IOMMU
  vfio_type1v2_iommu,      // /dev/vfio/vfio, VFIO_TYPE1v2_IOMMU
  iommufd_compat_type1,    // /dev/iommu as a VFIO container, VFIO_TYPE1_IOMMU
  iommufd_compat_type1v2,  // /dev/iommu as a VFIO container, VFIO_TYPE1v2_IOMMU
  iommufd,                 // /dev/iommu, an IOAS, devices through their cdev
};

struct IommuModeInfo {
  IommuMode mode;
  std::string_view name;            // "iommufd_compat_type1v2"
  const char* container_path;       // nullptr for native iommufd
  unsigned long iommu_type;         // VFIO_TYPE1*_IOMMU; 0 for native iommufd
};

constexpr IommuMode kDefaultIommuMode = IommuMode::iommufd;
std::span<const IommuModeInfo> all_iommu_modes();
const IommuModeInfo& iommu_mode_info(IommuMode mode);
// The error names the unknown mode and lists the known ones.
Result<IommuMode> iommu_mode_from_name(std::string_view name);


// Host memory mapped for DMA at an IOVA of its own. The memory must outlive
// the mapping: keep the MappedBuffer until the region is unmapped or the
// Iommu is gone.
struct MappedBuffer {
  DmaBuffer memory;
  DmaRegion region;
  std::span<std::byte> bytes() const { return {memory.bytes(), region.size}; }
};

enum DmaAccess : std::uint32_t { dma_read = 1u << 0, dma_write = 1u << 1, dma_read_write = dma_read | dma_write };

class Iommu {
  struct Key {  // only open() can make one: construction goes through it
    explicit Key() = default;
  };

 public:
  static Result<std::shared_ptr<Iommu>> open(IommuMode mode = kDefaultIommuMode);
  Iommu(Key, IommuMode mode) : mode_(mode) {}
  Iommu(const Iommu&) = delete;
  Iommu& operator=(const Iommu&) = delete;

  IommuMode mode() const { return mode_; }
  std::string_view mode_name() const { return iommu_mode_info(mode_).name; }
  bool uses_cdev() const { return mode_ == IommuMode::iommufd; }
  int container_fd() const { return container_.get(); }  // VFIO container (type1 and compat modes)
  int iommufd() const;                                    // /dev/iommu (compat and native modes)
  std::uint32_t ioas_id() const { return ioas_id_; }      // native iommufd only

  // DMA mappings. The Iommu keeps a table of what it mapped (for to_iova()
  // and regions()): map() adds a region once the kernel has mapped it, and
  // unmap() drops the regions that lie wholly inside what the kernel
  // reports unmapped.
  Result<void> map(const DmaRegion& region, std::uint32_t access = dma_read_write);
  // Returns the bytes the kernel reports unmapped.
  Result<std::uint64_t> unmap(std::uint64_t iova, std::uint64_t size);
  Result<std::uint64_t> unmap(const DmaRegion& region) { return unmap(region.iova, region.size); }
  Result<std::uint64_t> unmap_all();
  // Allocates `size` bytes of `backing` (rounded up to its page size), takes
  // an IOVA block for them from `iovas` and maps them like map(). Errors:
  // the allocation's (unsupported for an empty HugeTLB pool), ENOSPC when no
  // IOVA is left, the map's (the IOVA block then goes back to `iovas`).
  Result<MappedBuffer> map_new(IovaAllocator& iovas, Backing backing, std::uint64_t size);
  // The usable IOVA ranges, sorted and merged.
  Result<std::vector<IovaRange>> iova_ranges() const;
  // An allocator over the usable ranges, clipped to the device's highest
  // address.
  Result<IovaAllocator> iova_allocator(std::uint64_t limit = UINT64_MAX) const;

  // Regions mapped through map() and map_new(), by host address (not to be read while
  // another thread maps).
  const RegionTable& regions() const { return regions_; }
  // The IOVA of a host address inside a mapped region.
  Result<std::uint64_t> to_iova(const void* vaddr) const;

  // Used by PciDevice in the group-based modes: the group's fd, opened once
  // and attached to this container; devices of one group share it.
  Result<int> attach_group(int group);

 private:
  Result<void> set_container_iommu();
  // The ioctls alone.
  Result<void> map_in_kernel(const DmaRegion& region, std::uint32_t access);
  Result<std::uint64_t> unmap_in_kernel(std::uint64_t iova, std::uint64_t size);
  Result<std::uint64_t> unmap_all_in_kernel();
  Result<std::vector<IovaRange>> kernel_iova_ranges() const;

  IommuMode mode_;
  UniqueFd container_;  // /dev/vfio/vfio or /dev/iommu used as a container
  UniqueFd iommufd_;    // native mode
  std::uint32_t ioas_id_ = 0;
  bool iommu_type_set_ = false;
  // Declared after container_, so the groups close before the container
  // they are attached to; closing the container or iommufd unmaps the rest.
  std::map<int, UniqueFd> groups_;
  RegionTable regions_;
  // Guards groups_ and regions_: devices may be opened, and buffers mapped,
  // from several threads at once.
  mutable std::mutex mutex_;
};

}  // namespace vfiolab
