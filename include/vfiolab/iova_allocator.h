// IOVA bookkeeping for DMA mappings: the usable ranges the kernel reports, and a simple allocator that
// hands out aligned blocks from them so tests never map two buffers at the same IOVA.
#pragma once

#include "vfiolab/error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace vfiolab {

// An inclusive range of usable IOVAs, as the kernel reports them
// (type1 VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE and IOMMU_IOAS_IOVA_RANGES both use start/last inclusive).
struct IovaRange {
  std::uint64_t start = 0;
  std::uint64_t last = 0;  // inclusive
  auto operator<=>(const IovaRange&) const = default;
};

// Sorts ranges and merges overlapping or adjacent ones. Fails (message naming the bad range in hex) on a
// range whose start > last. An empty input gives an empty output.
Result<std::vector<IovaRange>> normalize_iova_ranges(std::vector<IovaRange> ranges);

// Hands out naturally aligned power-of-two IOVA blocks from the usable ranges, lowest address first,
// never twice (a bump allocator per range: only the newest block can be given back, reset() starts
// over). `limit` is the highest IOVA the device can address (inclusive),
// for devices with a narrow DMA mask (e.g. QEMU's edu device: 28 bits -> limit 0x0fffffff); ranges are
// clipped to it.
class IovaAllocator {
 public:
  // Ranges are normalized by the constructor's factory; use create().
  static Result<IovaAllocator> create(std::vector<IovaRange> ranges, std::uint64_t limit = UINT64_MAX);
  // size must be a nonzero power of two; the result is aligned to size. Errors: EINVAL for a size that is
  // zero or not a power of two, ENOSPC naming the size when nothing fits.
  Result<std::uint64_t> allocate(std::uint64_t size);
  // Takes back the block allocate() handed out last in its range (a caller whose map of it failed), so
  // the next allocate() can hand it out again. False, and nothing changes, for any other block.
  bool give_back(std::uint64_t start, std::uint64_t size);
  void reset();
  const std::vector<IovaRange>& ranges() const;  // after normalization and clipping

 private:
  // Where the next block of one range may start. A separate flag rather than a sentinel address, because
  // a range ending at UINT64_MAX has no "one past the end" to point at.
  struct Cursor {
    std::uint64_t next_free = 0;
    bool full = false;
  };

  explicit IovaAllocator(std::vector<IovaRange> ranges);

  std::vector<IovaRange> ranges_;
  std::vector<Cursor> cursors_;  // one per entry of ranges_
};

}  // namespace vfiolab
