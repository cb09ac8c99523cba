// Memory for DMA buffers, from each backing source the suite multiplies over.
// An empty HugeTLB pool or a kernel without memfd is reported as unsupported
// (a SKIP with the reason), not as a failure.
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/unique_fd.h"

#include <cstddef>
#include <span>
#include <string_view>

namespace vfiolab {

enum class Backing {
  anonymous,
  anonymous_hugetlb_2mb,
  anonymous_hugetlb_1gb,
  memfd,
  memfd_hugetlb_2mb,
  memfd_hugetlb_1gb,
};

struct BackingInfo {
  Backing backing;
  std::string_view name;   // as used in variant names: "anonymous_hugetlb_2mb"
  std::size_t page_size;   // 4096 for the non-HugeTLB ones (the system page size)
  bool hugetlb;
  bool memfd;
};

std::span<const BackingInfo> all_backings();
const BackingInfo& backing_info(Backing backing);
Result<Backing> backing_from_name(std::string_view name);

// Free pages of that size in the HugeTLB pool, read from sysfs (0 when the
// size is not configured).
std::size_t free_hugepages(std::size_t page_size);

// Whether allocate() touches every page before it returns. Faulted, a DMA
// map only pins; left alone, the map faults the pages in itself (and a
// short HugeTLB pool shows up there, or as SIGBUS on first touch).
enum class Prefault { yes, no };

class DmaBuffer {
 public:
  // size is rounded up to the backing's page size.
  static Result<DmaBuffer> allocate(Backing backing, std::size_t size, Prefault prefault = Prefault::yes);

  void* data() const { return mapping_.get(); }
  std::byte* bytes() const { return mapping_.bytes(); }
  std::size_t size() const { return mapping_.size(); }
  std::size_t page_size() const { return backing_info(backing_).page_size; }
  Backing backing() const { return backing_; }
  int memfd() const { return memfd_.get(); }  // -1 for anonymous memory

 private:
  DmaBuffer(Backing backing, UniqueFd memfd, MemoryMapping mapping)
      : backing_(backing), memfd_(std::move(memfd)), mapping_(std::move(mapping)) {}
  Backing backing_;
  UniqueFd memfd_;
  MemoryMapping mapping_;
};

}  // namespace vfiolab
