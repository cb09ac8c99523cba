// split_copy: the pieces a large copy is cut into for a driver.
#include "check.h"
#include "vfiolab/driver.h"

#include <gtest/gtest.h>

namespace vfiolab {
namespace {

std::vector<CopyChunk> chunks(std::uint64_t src, std::uint64_t dst, std::uint64_t size, std::uint64_t max) {
  auto result = split_copy(src, dst, size, max);
  VFIOLAB_EXPECT_OK(result);
  return result.value_or(std::vector<CopyChunk>{});
}

TEST(SplitCopy, SmallerThanOneChunkIsOneChunk) {
  EXPECT_EQ(chunks(0x1000, 0x9000, 100, 4096), (std::vector<CopyChunk>{{0x1000, 0x9000, 100}}));
}

TEST(SplitCopy, ExactMultipleHasNoTail) {
  EXPECT_EQ(chunks(0x10000, 0x20000, 3 * 4096, 4096),
            (std::vector<CopyChunk>{{0x10000, 0x20000, 4096}, {0x11000, 0x21000, 4096}, {0x12000, 0x22000, 4096}}));
}

TEST(SplitCopy, RemainderIsTheLastChunk) {
  EXPECT_EQ(chunks(0, 0x100, 10, 4), (std::vector<CopyChunk>{{0, 0x100, 4}, {4, 0x104, 4}, {8, 0x108, 2}}));
}

TEST(SplitCopy, ChunksCoverTheRangeInOrderWithoutGaps) {
  const std::uint64_t src = 0x123457, dst = 0xabcdef01, size = 1'000'003, max = 4099;
  const auto pieces = chunks(src, dst, size, max);
  ASSERT_EQ(pieces.size(), (size + max - 1) / max);
  std::uint64_t done = 0;
  for (const auto& piece : pieces) {
    EXPECT_EQ(piece.src_iova, src + done);
    EXPECT_EQ(piece.dst_iova, dst + done);
    EXPECT_GT(piece.size, 0u);
    EXPECT_LE(piece.size, max);
    done += piece.size;
  }
  EXPECT_EQ(done, size);
}

TEST(SplitCopy, ZeroSizeIsNoChunks) { EXPECT_TRUE(chunks(0x1000, 0x2000, 0, 4096).empty()); }

TEST(SplitCopy, ZeroChunkSizeIsAnError) {
  auto result = split_copy(0, 0, 4096, 0);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().errnum, EINVAL);
}

TEST(SplitCopy, RangeEndingAtTheTopOfTheIovaSpaceIsFine) {
  const auto pieces = chunks(UINT64_MAX - 8191, 0, 8192, 4096);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[1].src_iova, UINT64_MAX - 4095);
}

TEST(SplitCopy, RangePastTheTopIsAnError) {
  for (auto [src, dst] : {std::pair<std::uint64_t, std::uint64_t>{UINT64_MAX - 4094, 0}, {0, UINT64_MAX}}) {
    auto result = split_copy(src, dst, 4096, 1024);
    ASSERT_FALSE(result) << std::hex << src << " " << dst;
    EXPECT_EQ(result.error().errnum, EINVAL);
    EXPECT_NE(result.error().message().find("wraps"), std::string::npos) << result.error().message();
  }
}

TEST(SplitCopy, HugeCopyWithHugeChunks) {
  const auto pieces = chunks(0, 1ull << 62, 1ull << 62, 1ull << 61);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[1], (CopyChunk{1ull << 61, (1ull << 62) + (1ull << 61), 1ull << 61}));
}

}  // namespace
}  // namespace vfiolab
