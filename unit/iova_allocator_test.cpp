#include "check.h"
#include "vfiolab/iova_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <vector>

#include <fmt/format.h>

namespace vfiolab {

// Readable failure messages; internal linkage so no other test file can collide with it.
[[maybe_unused]] static void PrintTo(const IovaRange& range, std::ostream* out) {
  *out << fmt::format("[{:#x}, {:#x}]", range.start, range.last);
}

namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kEduLimit = 0x0fffffff;  // QEMU edu device: 28-bit DMA mask

std::vector<IovaRange> normalized(std::vector<IovaRange> ranges) {
  auto result = normalize_iova_ranges(std::move(ranges));
  VFIOLAB_EXPECT_OK(result);
  return result ? *result : std::vector<IovaRange>{};
}

IovaAllocator make_allocator(std::vector<IovaRange> ranges, std::uint64_t limit = UINT64_MAX) {
  auto allocator = IovaAllocator::create(std::move(ranges), limit);
  VFIOLAB_EXPECT_OK(allocator);
  if (!allocator) return check(IovaAllocator::create({}));
  return std::move(*allocator);
}

// --- normalize_iova_ranges ---

TEST(IovaRanges, EmptyStaysEmpty) { EXPECT_TRUE(normalized({}).empty()); }

TEST(IovaRanges, SortsUnsorted) {
  EXPECT_EQ(normalized({{0x5000, 0x5fff}, {0x1000, 0x1fff}, {0x3000, 0x3fff}}),
            (std::vector<IovaRange>{{0x1000, 0x1fff}, {0x3000, 0x3fff}, {0x5000, 0x5fff}}));
}

TEST(IovaRanges, MergesOverlapping) {
  EXPECT_EQ(normalized({{0x2000, 0x4fff}, {0x1000, 0x2fff}}), (std::vector<IovaRange>{{0x1000, 0x4fff}}));
}

TEST(IovaRanges, MergesAdjacent) {
  EXPECT_EQ(normalized({{0x2000, 0x2fff}, {0x1000, 0x1fff}, {0x3000, 0x3fff}}),
            (std::vector<IovaRange>{{0x1000, 0x3fff}}));
}

TEST(IovaRanges, KeepsOneByteGap) {
  EXPECT_EQ(normalized({{0x1000, 0x1ffe}, {0x2000, 0x2fff}}),
            (std::vector<IovaRange>{{0x1000, 0x1ffe}, {0x2000, 0x2fff}}));
}

TEST(IovaRanges, MergesDuplicates) {
  EXPECT_EQ(normalized({{0x1000, 0x1fff}, {0x1000, 0x1fff}, {0x1000, 0x1fff}}),
            (std::vector<IovaRange>{{0x1000, 0x1fff}}));
}

TEST(IovaRanges, MergesContained) {
  // The contained range sorts after the outer one and must not shrink it.
  EXPECT_EQ(normalized({{0x1000, 0x9fff}, {0x2000, 0x2fff}}), (std::vector<IovaRange>{{0x1000, 0x9fff}}));
  EXPECT_EQ(normalized({{0x2000, 0x2fff}, {0x1000, 0x9fff}, {0x3000, 0x3fff}}),
            (std::vector<IovaRange>{{0x1000, 0x9fff}}));
}

TEST(IovaRanges, SingleAddressRanges) {
  EXPECT_EQ(normalized({{5, 5}, {4, 4}, {7, 7}}), (std::vector<IovaRange>{{4, 5}, {7, 7}}));
}

TEST(IovaRanges, RejectsStartAboveLast) {
  auto result = normalize_iova_ranges({{0x1000, 0x1fff}, {0x3000, 0x2fff}});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("0x3000"), std::string::npos) << result.error();
  EXPECT_NE(result.error().message().find("0x2fff"), std::string::npos) << result.error();
}

TEST(IovaRanges, CreateRejectsStartAboveLast) {
  auto allocator = IovaAllocator::create({{0x10, 0x0f}});
  ASSERT_FALSE(allocator);
  EXPECT_NE(allocator.error().message().find("0x10"), std::string::npos) << allocator.error();
}

TEST(IovaRanges, FullSpace) {
  EXPECT_EQ(normalized({{0, UINT64_MAX}}), (std::vector<IovaRange>{{0, UINT64_MAX}}));
  // Pieces touching the top and bottom of the space merge without wrapping.
  EXPECT_EQ(normalized({{0x8000000000000000, UINT64_MAX}, {0, 0x7fffffffffffffff}}),
            (std::vector<IovaRange>{{0, UINT64_MAX}}));
  EXPECT_EQ(normalized({{0, UINT64_MAX}, {UINT64_MAX, UINT64_MAX}, {0x1000, 0x1fff}}),
            (std::vector<IovaRange>{{0, UINT64_MAX}}));
}

TEST(IovaRanges, TopOfSpaceStaysSeparate) {
  EXPECT_EQ(normalized({{UINT64_MAX, UINT64_MAX}, {0, 0}}),
            (std::vector<IovaRange>{{0, 0}, {UINT64_MAX, UINT64_MAX}}));
}

// --- IovaAllocator ---

TEST(IovaAllocator, LowestAddressFirst) {
  auto allocator = make_allocator({{0x100000, 0x1fffff}});
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0x100000u);
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0x101000u);
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0x102000u);
}

TEST(IovaAllocator, AlignsToSize) {
  auto allocator = make_allocator({{0, 0xffffffff}});
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0u);
  auto huge = check(allocator.allocate(2 * kMiB));
  EXPECT_EQ(huge % (2 * kMiB), 0u);
  EXPECT_EQ(huge, 2 * kMiB);
  auto gig = check(allocator.allocate(1024 * kMiB));
  EXPECT_EQ(gig, 1024 * kMiB);
}

TEST(IovaAllocator, AlignsWithinUnalignedRangeStart) {
  auto allocator = make_allocator({{0x1234, 0xffff}});
  EXPECT_EQ(allocator.allocate(0x1000), 0x2000u);
  EXPECT_EQ(allocator.allocate(1), 0x3000u);
  EXPECT_EQ(allocator.allocate(2), 0x3002u);
}

TEST(IovaAllocator, NeverHandsOutOverlappingBlocks) {
  auto allocator = make_allocator({{0x1000, 0x3fffff}, {0x10000000, 0x1fffffff}});
  std::vector<IovaRange> blocks;
  const std::uint64_t sizes[] = {4 * kKiB, 64 * kKiB, 2 * kMiB, 8, 1 * kMiB, 16 * kMiB, 4 * kKiB};
  for (std::uint64_t size : sizes) {
    auto iova = check(allocator.allocate(size));
    EXPECT_EQ(iova % size, 0u);
    blocks.push_back({iova, iova + size - 1});
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    for (std::size_t j = i + 1; j < blocks.size(); ++j) {
      EXPECT_TRUE(blocks[i].last < blocks[j].start || blocks[j].last < blocks[i].start)
          << i << " and " << j << " overlap";
    }
  }
}

TEST(IovaAllocator, SkipsTooSmallRange) {
  auto allocator = make_allocator({{0x200000, 0x5fffff}, {0x1000, 0x2fff}});
  EXPECT_EQ(allocator.allocate(2 * kMiB), 0x200000u);
  // The small range was passed over, not used up.
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0x1000u);
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0x2000u);
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0x400000u);
}

TEST(IovaAllocator, UnalignedRangeOfRightLengthCannotHoldBlock) {
  // 2 MiB long but not 2 MiB aligned: the aligned block would run past the range's end.
  auto allocator = make_allocator({{0x100000, 0x2fffff}});
  EXPECT_FALSE(allocator.allocate(2 * kMiB));
  EXPECT_EQ(allocator.allocate(1 * kMiB), 0x100000u);
  EXPECT_EQ(allocator.allocate(1 * kMiB), 0x200000u);
  EXPECT_FALSE(allocator.allocate(1));
}

TEST(IovaAllocator, DoesNotStraddleRanges) {
  // Only the hole at [0x2000, 0x2fff] keeps an aligned 8 KiB block at 0x2000 from existing.
  auto allocator = make_allocator({{0x1000, 0x1fff}, {0x3000, 0x3fff}});
  auto result = allocator.allocate(0x2000);
  EXPECT_FALSE(result);
  EXPECT_EQ(allocator.allocate(0x1000), 0x1000u);
  EXPECT_EQ(allocator.allocate(0x1000), 0x3000u);
}

TEST(IovaAllocator, ClipsToLimit) {
  auto allocator = make_allocator({{0, UINT64_MAX}}, kEduLimit);
  EXPECT_EQ(allocator.ranges(), (std::vector<IovaRange>{{0, kEduLimit}}));
  int count = 0;
  while (auto iova = allocator.allocate(2 * kMiB)) {
    EXPECT_LE(*iova + 2 * kMiB - 1, kEduLimit);
    ++count;
  }
  EXPECT_EQ(count, 128);  // 256 MiB / 2 MiB
  EXPECT_FALSE(allocator.allocate(4 * kKiB));
}

TEST(IovaAllocator, ClipsRangeStraddlingLimit) {
  auto allocator = make_allocator({{0x20000000, 0x2fffffff}, {0x0ff00000, 0x1fffffff}, {0x1000, 0xffff}},
                                  kEduLimit);
  EXPECT_EQ(allocator.ranges(), (std::vector<IovaRange>{{0x1000, 0xffff}, {0x0ff00000, kEduLimit}}));
  EXPECT_EQ(allocator.allocate(1 * kMiB), 0x0ff00000u);
  EXPECT_FALSE(allocator.allocate(1 * kMiB));
}

TEST(IovaAllocator, ExhaustionReportsNoRoom) {
  auto allocator = make_allocator({{0x10000, 0x13fff}});
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(allocator.allocate(4 * kKiB));
  auto result = allocator.allocate(4 * kKiB);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("no room"), std::string::npos) << result.error();
  EXPECT_NE(result.error().message().find("0x1000"), std::string::npos) << result.error();
  EXPECT_FALSE(allocator.allocate(1));
}

TEST(IovaAllocator, NoRangesReportsNoRoom) {
  auto allocator = make_allocator({});
  EXPECT_TRUE(allocator.ranges().empty());
  auto result = allocator.allocate(4 * kKiB);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("no room"), std::string::npos) << result.error();
}

TEST(IovaAllocator, RejectsZeroSize) {
  auto allocator = make_allocator({{0, 0xffff}});
  auto result = allocator.allocate(0);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("zero"), std::string::npos) << result.error();
}

TEST(IovaAllocator, RejectsNonPowerOfTwo) {
  auto allocator = make_allocator({{0, 0xffff}});
  const std::uint64_t bad_sizes[] = {3, 0x3000, UINT64_MAX, (1ull << 63) + 1};
  for (std::uint64_t size : bad_sizes) {
    auto result = allocator.allocate(size);
    ASSERT_FALSE(result) << size;
    EXPECT_NE(result.error().message().find("power of two"), std::string::npos) << result.error();
  }
  // Rejected requests use nothing up.
  EXPECT_EQ(allocator.allocate(1), 0u);
}

TEST(IovaAllocator, TopOfSpaceFillsWithoutWrap) {
  constexpr std::uint64_t kTopStart = 0xfffffffffff00000;  // the last 1 MiB
  auto allocator = make_allocator({{kTopStart, UINT64_MAX}});
  // Halving sizes fill the range exactly, then one last 4 KiB block takes the final page.
  std::uint64_t expected = kTopStart;
  for (std::uint64_t size = 512 * kKiB; size >= 4 * kKiB; size /= 2) {
    auto iova = check(allocator.allocate(size));
    EXPECT_EQ(iova, expected);
    expected += size;
  }
  EXPECT_EQ(expected, 0xfffffffffffff000u);
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0xfffffffffffff000u);
  auto after = allocator.allocate(1);
  ASSERT_FALSE(after);
  EXPECT_NE(after.error().message().find("no room"), std::string::npos) << after.error();
  EXPECT_FALSE(allocator.allocate(4 * kKiB));
}

TEST(IovaAllocator, TopOfSpaceSingleBlock) {
  auto allocator = make_allocator({{0xfffffffffff00000, UINT64_MAX}});
  EXPECT_EQ(allocator.allocate(1 * kMiB), 0xfffffffffff00000u);
  EXPECT_FALSE(allocator.allocate(1 * kMiB));
  EXPECT_FALSE(allocator.allocate(1));
}

TEST(IovaAllocator, LastAddressAlone) {
  auto allocator = make_allocator({{UINT64_MAX, UINT64_MAX}});
  EXPECT_FALSE(allocator.allocate(2));  // aligning UINT64_MAX up to 2 would wrap
  EXPECT_EQ(allocator.allocate(1), UINT64_MAX);
  EXPECT_FALSE(allocator.allocate(1));
}

TEST(IovaAllocator, AlignmentWouldWrap) {
  auto allocator = make_allocator({{0xffffffffffffff00, UINT64_MAX}});
  EXPECT_FALSE(allocator.allocate(4 * kKiB));
  EXPECT_FALSE(allocator.allocate(1ull << 63));
  EXPECT_EQ(allocator.allocate(0x100), 0xffffffffffffff00u);
}

TEST(IovaAllocator, HalfOfSpaceBlocks) {
  auto allocator = make_allocator({{0, UINT64_MAX}});
  EXPECT_EQ(allocator.allocate(1ull << 63), 0u);
  EXPECT_EQ(allocator.allocate(1ull << 63), 1ull << 63);
  EXPECT_FALSE(allocator.allocate(1ull << 63));
  EXPECT_FALSE(allocator.allocate(1));
}

TEST(IovaAllocator, HalfOfSpaceAfterSmallBlock) {
  auto allocator = make_allocator({{0, UINT64_MAX}});
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0u);
  EXPECT_EQ(allocator.allocate(1ull << 63), 1ull << 63);
  EXPECT_FALSE(allocator.allocate(1ull << 63));
}

TEST(IovaAllocator, HalfOfSpaceDoesNotFitSmallerRange) {
  auto allocator = make_allocator({{1, UINT64_MAX}});
  EXPECT_EQ(allocator.allocate(1ull << 63), 1ull << 63);
  auto again = make_allocator({{0, UINT64_MAX - 1}});
  EXPECT_EQ(again.allocate(1ull << 63), 0u);
  EXPECT_FALSE(again.allocate(1ull << 63));
}

TEST(IovaAllocator, ResetStartsOver) {
  auto allocator = make_allocator({{0x1000, 0x2fff}, {0x10000, 0x10fff}});
  EXPECT_EQ(allocator.allocate(0x1000), 0x1000u);
  EXPECT_EQ(allocator.allocate(0x1000), 0x2000u);
  EXPECT_EQ(allocator.allocate(0x1000), 0x10000u);
  EXPECT_FALSE(allocator.allocate(0x1000));
  allocator.reset();
  EXPECT_EQ(allocator.allocate(0x1000), 0x1000u);
  EXPECT_EQ(allocator.allocate(0x1000), 0x2000u);
  EXPECT_EQ(allocator.allocate(0x1000), 0x10000u);
}

TEST(IovaAllocator, ResetAfterFillingTopOfSpace) {
  auto allocator = make_allocator({{0, UINT64_MAX}});
  EXPECT_EQ(allocator.allocate(1ull << 63), 0u);
  EXPECT_EQ(allocator.allocate(1ull << 63), 1ull << 63);
  allocator.reset();
  EXPECT_EQ(allocator.allocate(1), 0u);
}

TEST(IovaAllocator, RangesAreNormalized) {
  auto allocator = make_allocator({{0x3000, 0x3fff}, {0x1000, 0x1fff}, {0x2000, 0x2fff}});
  EXPECT_EQ(allocator.ranges(), (std::vector<IovaRange>{{0x1000, 0x3fff}}));
  // Merged neighbours make room for a block no single input range could hold.
  EXPECT_EQ(allocator.allocate(0x2000), 0x2000u);
}

// --- adversarial inputs ---

TEST(IovaAllocatorAdversarial, ManyTinyRanges) {
  // Single bytes at even addresses: never adjacent, so nothing merges and nothing larger than 1 fits.
  std::vector<IovaRange> ranges;
  constexpr std::uint64_t kCount = 4096;
  for (std::uint64_t i = kCount; i > 0; --i) ranges.push_back({2 * (i - 1), 2 * (i - 1)});
  auto allocator = make_allocator(ranges);
  EXPECT_EQ(allocator.ranges().size(), kCount);
  EXPECT_FALSE(allocator.allocate(2));
  for (std::uint64_t i = 0; i < kCount; ++i) {
    auto iova = check(allocator.allocate(1));
    EXPECT_EQ(iova, 2 * i);
  }
  EXPECT_FALSE(allocator.allocate(1));
}

TEST(IovaAllocatorAdversarial, ManyTinyAdjacentRangesMerge) {
  std::vector<IovaRange> ranges;
  for (std::uint64_t i = 0; i < 4096; ++i) ranges.push_back({0x100000 + i, 0x100000 + i});
  auto allocator = make_allocator(ranges);
  EXPECT_EQ(allocator.ranges(), (std::vector<IovaRange>{{0x100000, 0x100fff}}));
  EXPECT_EQ(allocator.allocate(4 * kKiB), 0x100000u);
}

TEST(IovaAllocatorAdversarial, ManyTinyRangesAtTopOfSpace) {
  // Odd single bytes just below UINT64_MAX: a 2-byte request must not wrap while aligning.
  std::vector<IovaRange> ranges;
  for (std::uint64_t i = 0; i < 64; ++i) ranges.push_back({UINT64_MAX - 2 * i, UINT64_MAX - 2 * i});
  auto allocator = make_allocator(ranges);
  EXPECT_FALSE(allocator.allocate(2));
  EXPECT_FALSE(allocator.allocate(1ull << 63));
  EXPECT_EQ(allocator.allocate(1), UINT64_MAX - 126);
}

TEST(IovaAllocatorAdversarial, LimitZero) {
  auto allocator = make_allocator({{0, 0xffff}, {0x100000, 0x1fffff}}, 0);
  EXPECT_EQ(allocator.ranges(), (std::vector<IovaRange>{{0, 0}}));
  EXPECT_FALSE(allocator.allocate(2));
  EXPECT_EQ(allocator.allocate(1), 0u);
  EXPECT_FALSE(allocator.allocate(1));

  auto above_zero = make_allocator({{0x1000, 0xffff}}, 0);
  EXPECT_TRUE(above_zero.ranges().empty());
  EXPECT_FALSE(above_zero.allocate(1));
}

TEST(IovaAllocatorAdversarial, RangesEntirelyAboveLimit) {
  auto allocator = make_allocator({{0x10000000, 0x1fffffff}, {0xfffffffffff00000, UINT64_MAX}}, kEduLimit);
  EXPECT_TRUE(allocator.ranges().empty());
  auto result = allocator.allocate(4 * kKiB);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("no room"), std::string::npos) << result.error();
}

TEST(IovaAllocatorAdversarial, LimitJustBelowRangeEnd) {
  auto allocator = make_allocator({{0, UINT64_MAX}}, UINT64_MAX - 1);
  EXPECT_EQ(allocator.ranges(), (std::vector<IovaRange>{{0, UINT64_MAX - 1}}));
  EXPECT_EQ(allocator.allocate(1ull << 63), 0u);
  EXPECT_FALSE(allocator.allocate(1ull << 63));
  EXPECT_EQ(allocator.allocate(1ull << 62), 1ull << 63);
}

// Iommu::map_new gives the block back when its map fails; only the newest
// block of a range can be taken back, and then it is handed out again.
TEST(IovaAllocator, GiveBackOnlyTheNewestBlock) {
  auto allocator = IovaAllocator::create({{0x10000, 0x1ffff}}).value();
  const auto first = allocator.allocate(0x1000).value();
  const auto second = allocator.allocate(0x1000).value();
  EXPECT_FALSE(allocator.give_back(first, 0x1000)) << "an older block was taken back";
  EXPECT_FALSE(allocator.give_back(second, 0x2000)) << "a block of another size was taken back";
  EXPECT_TRUE(allocator.give_back(second, 0x1000));
  EXPECT_EQ(allocator.allocate(0x1000).value(), second);
  // A range filled to its last IOVA gives back its final block too.
  auto full = IovaAllocator::create({{0x0, 0x1fff}}).value();
  (void)full.allocate(0x1000).value();
  const auto last = full.allocate(0x1000).value();
  EXPECT_FALSE(full.allocate(0x1000)) << "the range should be full";
  EXPECT_TRUE(full.give_back(last, 0x1000));
  EXPECT_EQ(full.allocate(0x1000).value(), last);
  EXPECT_FALSE(full.give_back(0x100000, 0x1000)) << "a block outside every range was taken back";
}

}  // namespace
}  // namespace vfiolab
