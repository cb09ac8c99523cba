#include "vfiolab/iova_allocator.h"

#include <cerrno>

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <optional>
#include <utility>

namespace vfiolab {
namespace {

// Rounds address up to a multiple of alignment (a power of two); nullopt if that would pass UINT64_MAX.
std::optional<std::uint64_t> align_up(std::uint64_t address, std::uint64_t alignment) {
  const std::uint64_t misalignment = address & (alignment - 1);
  if (misalignment == 0) return address;
  const std::uint64_t padding = alignment - misalignment;
  if (address > UINT64_MAX - padding) return std::nullopt;
  return address + padding;
}

}  // namespace

Result<std::vector<IovaRange>> normalize_iova_ranges(std::vector<IovaRange> ranges) {
  for (const IovaRange& range : ranges) {
    if (range.start > range.last) {
      return std::unexpected(make_error(EINVAL, "IOVA ranges",
                                        fmt::format("invalid range [{:#x}, {:#x}]: start is above last",
                                                    range.start, range.last)));
    }
  }
  std::ranges::sort(ranges);

  std::vector<IovaRange> merged;
  for (const IovaRange& range : ranges) {
    if (!merged.empty()) {
      IovaRange& previous = merged.back();
      // Sorted by start, so range.start >= previous.start. "start - 1" cannot wrap: when start is 0 the
      // first test already holds. Comparing this way avoids computing previous.last + 1, which wraps
      // at the top of the space.
      if (range.start <= previous.last || range.start - 1 == previous.last) {
        previous.last = std::max(previous.last, range.last);
        continue;
      }
    }
    merged.push_back(range);
  }
  return merged;
}

Result<IovaAllocator> IovaAllocator::create(std::vector<IovaRange> ranges, std::uint64_t limit) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto normalized, normalize_iova_ranges(std::move(ranges)));

  std::vector<IovaRange> reachable;
  for (const IovaRange& range : normalized) {
    if (range.start > limit) break;  // sorted: every later range is above the limit too
    reachable.push_back({range.start, std::min(range.last, limit)});
  }
  return IovaAllocator(std::move(reachable));
}

IovaAllocator::IovaAllocator(std::vector<IovaRange> ranges) : ranges_(std::move(ranges)) { reset(); }

Result<std::uint64_t> IovaAllocator::allocate(std::uint64_t size) {
  if (size == 0) return std::unexpected(make_error(EINVAL, "IovaAllocator::allocate", "block size is zero"));
  if (!std::has_single_bit(size)) {
    return std::unexpected(
        make_error(EINVAL, "IovaAllocator::allocate", fmt::format("block size {:#x} is not a power of two", size)));
  }

  for (std::size_t index = 0; index < ranges_.size(); ++index) {
    const IovaRange& range = ranges_[index];
    Cursor& cursor = cursors_[index];
    if (cursor.full) continue;

    const std::optional<std::uint64_t> block_start = align_up(cursor.next_free, size);
    if (!block_start || *block_start > range.last) continue;
    // Both sides stay in range: block_start <= last, and size - 1 cannot wrap for a nonzero size.
    if (range.last - *block_start < size - 1) continue;

    const std::uint64_t block_last = *block_start + (size - 1);
    if (block_last == range.last) {
      cursor.full = true;  // block_last + 1 may not exist (range ending at UINT64_MAX)
    } else {
      cursor.next_free = block_last + 1;
    }
    return *block_start;
  }
  return std::unexpected(make_error(ENOSPC, "IovaAllocator::allocate",
                                    fmt::format("no room for a block of size {:#x} in {} usable range(s)", size,
                                                ranges_.size())));
}

bool IovaAllocator::give_back(std::uint64_t start, std::uint64_t size) {
  if (size == 0) return false;
  const std::uint64_t last = start + (size - 1);
  for (std::size_t index = 0; index < ranges_.size(); ++index) {
    const IovaRange& range = ranges_[index];
    if (start < range.start || last > range.last) continue;
    Cursor& cursor = cursors_[index];
    const bool newest = cursor.full ? last == range.last : cursor.next_free - 1 == last;
    if (!newest) return false;
    cursor = {start, false};
    return true;
  }
  return false;
}

void IovaAllocator::reset() {
  cursors_.clear();
  cursors_.reserve(ranges_.size());
  for (const IovaRange& range : ranges_) cursors_.push_back({range.start, false});
}

const std::vector<IovaRange>& IovaAllocator::ranges() const { return ranges_; }

}  // namespace vfiolab
