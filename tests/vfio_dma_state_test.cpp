// vfio_dma_state_test: what the kernel says about DMA mappings and iommufd
// objects, judged by what the device can reach afterwards. Each claim is
// checked through a second path:
//  - an unmap's reported length against the sum of what was mapped; the
//    IOVAs it freed against a new map there (must succeed) and the device's
//    DMA there (must be blocked, with the fault in the kernel log); the
//    mappings beside the range against a copy through them (must work);
//  - read-only and write-only mappings against copies in both directions;
//  - iommufd detach, destroy and replace against the device's DMA.
// Runs in every IOMMU mode (the iommufd object tests in native iommufd only)
// on a device with a vfiolab DMA driver.
#include "driver_fixture.h"

#include <linux/iommufd.h>
#include <sys/ioctl.h>

#include <cerrno>

namespace vfiolab {
namespace {

constexpr std::uint64_t kPiece = 16 * 1024;

// The data and the DMA checks every test here makes.
class vfio_dma_state_fixture : public vfio_pci_driver_test {
 protected:
  // A copy the IOMMU must block, which the device must have run (see
  // blocked_copy_ran()).
  void blocked_copy(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size) {
    ASSERT_TRUE(blocked_copy_ran(driver_->memcpy(src_iova, dst_iova, size)))
        << fmt::format("copy {:#x} -> {:#x}", src_iova, dst_iova);
  }

  // A copy that must arrive, checked byte for byte against host memory.
  void good_copy(std::uint64_t src_iova, std::span<const std::byte> src, std::uint64_t dst_iova,
                 std::span<std::byte> dst, std::string_view what) {
    ASSERT_EQ(src.size(), dst.size());
    std::memset(dst.data(), 0, dst.size());
    check(driver_->memcpy(src_iova, dst_iova, dst.size()), what);
    ASSERT_EQ(std::memcmp(src.data(), dst.data(), dst.size()), 0) << what << ": the data did not arrive";
  }

  static bool all_pattern(std::span<const std::byte> bytes) {
    return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == kPattern; });
  }


  std::uint64_t copy_size() const { return std::min<std::uint64_t>(size_, kPiece); }
};

// Pieces of host memory mapped one after another in one IOVA block.
struct Pieces {
  std::vector<DmaBuffer> memory;
  std::uint64_t iova = 0;
  std::uint64_t at(std::size_t i) const { return iova + i * kPiece; }
  DmaRegion region(std::size_t i) const { return {memory[i].bytes(), at(i), kPiece}; }
  std::span<std::byte> bytes(std::size_t i) const { return {memory[i].bytes(), kPiece}; }
};

class vfio_dma_unmap_test : public vfio_dma_state_fixture {
 protected:
  // `count` pieces, each mapped on its own, at adjacent IOVAs.
  Pieces map_pieces(std::size_t count) {
    Pieces pieces;
    pieces.iova = check(allocator_->allocate(std::bit_ceil(count * kPiece)));
    for (std::size_t i = 0; i < count; ++i) {
      pieces.memory.push_back(check(DmaBuffer::allocate(Backing::anonymous, kPiece)));
      check(iommu_->map(pieces.region(i)));
    }
    return pieces;
  }

  // Each piece reachable: the device copies src_ into it.
  void expect_reachable(const Pieces& pieces, std::size_t first, std::size_t count, std::string_view when) {
    for (std::size_t i = first; i < first + count; ++i) {
      fill_random(src_->bytes().first(copy_size()));
      good_copy(src_->region.iova, src_->bytes().first(copy_size()), pieces.at(i),
                pieces.bytes(i).first(copy_size()), fmt::format("a copy into piece {} {}", i, when));
    }
  }

  // Each piece unreachable: a copy into it leaves it as it was, and the
  // first such copy's fault is in the kernel log.
  void expect_unreachable(const Pieces& pieces, std::size_t first, std::size_t count) {
    for (std::size_t i = first; i < first + count; ++i) std::memset(pieces.bytes(i).data(), int(kPattern), kPiece);
    fill_random(src_->bytes().first(copy_size()));
    auto witness = fault_witness();
    for (std::size_t i = first; i < first + count; ++i) {
      blocked_copy(src_->region.iova, pieces.at(i), copy_size());
      EXPECT_TRUE(all_pattern(pieces.bytes(i)))
          << fmt::format("the device wrote into piece {} at IOVA {:#x}, which the unmap removed", i, pieces.at(i));
    }
    witness.expect_caught(pieces.at(first), copy_size(),
                          [&] { return blocked_copy_again(src_->region.iova, pieces.at(first), copy_size()); });
  }
};

// Five pieces; one unmap call over the middle three. It must report their
// total, leave the two beside them working, and free the three: a map there
// succeeds, a DMA there is blocked. (Three, not more: each blocked DMA
// costs a share of the kernel's fault-message rate limit, which every test
// that checks the log waits on.)
TEST_P(vfio_dma_unmap_test, unmap_range_of_several_mappings) {
  constexpr std::size_t kCount = 5, kFirst = 1, kRemoved = 3;
  const Pieces pieces = map_pieces(kCount);
  ASSERT_NO_FATAL_FAILURE(expect_reachable(pieces, 0, kCount, "before the unmap"));

  const std::uint64_t unmapped = check(iommu_->unmap(pieces.at(kFirst), kRemoved * kPiece));
  EXPECT_EQ(unmapped, kRemoved * kPiece) << "the unmap of " << kRemoved << " whole mappings reported another length";

  ASSERT_NO_FATAL_FAILURE(expect_unreachable(pieces, kFirst, kRemoved));
  // The neighbours below and above the range are untouched.
  ASSERT_NO_FATAL_FAILURE(expect_reachable(pieces, 0, 1, "below the unmapped range"));
  ASSERT_NO_FATAL_FAILURE(expect_reachable(pieces, kFirst + kRemoved, 1, "above the unmapped range"));
  // The freed IOVAs take new mappings, which work.
  for (std::size_t i = kFirst; i < kFirst + kRemoved; ++i) {
    check(iommu_->map(pieces.region(i)),
          fmt::format("IOVA {:#x} was reported unmapped but cannot be mapped again", pieces.at(i)));
  }
  ASSERT_NO_FATAL_FAILURE(expect_reachable(pieces, kFirst, kRemoved, "mapped again"));
}

// Unmap-all must report everything this Iommu mapped and free every IOVA:
// the driver's region and buffers map again at their IOVAs and work, the
// pieces not mapped again stay unreachable.
TEST_P(vfio_dma_unmap_test, unmap_all_of_several_mappings) {
  constexpr std::size_t kCount = 3;
  const Pieces pieces = map_pieces(kCount);
  ASSERT_NO_FATAL_FAILURE(expect_reachable(pieces, 0, kCount, "before the unmap"));
  const std::uint64_t mapped = region_->region.size + src_->region.size + dst_->region.size + kCount * kPiece;

  const std::uint64_t unmapped = check(iommu_->unmap_all());
  EXPECT_EQ(unmapped, mapped) << "unmap-all reported another length than the sum of the mappings";
  for (const DmaRegion* region : {&region_->region, &src_->region, &dst_->region}) {
    check(iommu_->map(*region),
          fmt::format("IOVA {:#x} was unmapped by unmap-all but cannot be mapped again", region->iova));
  }
  ASSERT_NO_FATAL_FAILURE(copy_and_verify(size_));
  ASSERT_NO_FATAL_FAILURE(expect_unreachable(pieces, 0, kCount));
  for (std::size_t i = 0; i < kCount; ++i) check(iommu_->map(pieces.region(i)));
  ASSERT_NO_FATAL_FAILURE(expect_reachable(pieces, 0, kCount, "mapped again"));
}

class vfio_dma_permission_test : public vfio_dma_state_fixture {
 protected:
  // A buffer mapped with only `access` at a fresh IOVA; nullopt (and a
  // SKIP) when the mode refuses that access with EINVAL.
  std::optional<MappedBuffer> map_with(std::uint32_t access, std::string_view what) {
    auto memory = DmaBuffer::allocate(Backing::anonymous, kBufferSize);
    VFIOLAB_EXPECT_OK(memory);
    auto iova = allocator_->allocate(kBufferSize);
    VFIOLAB_EXPECT_OK(iova);
    if (!memory || !iova) return std::nullopt;
    MappedBuffer buffer{std::move(*memory), {}};
    buffer.region = {buffer.memory.bytes(), *iova, kBufferSize};
    if (auto mapped = iommu_->map(buffer.region, access); !mapped) {
      if (mapped.error().errnum == EINVAL) {
        skip_reason_ = fmt::format("{} refuses {} mappings: {}", iommu_->mode_name(), what, mapped.error().message());
      } else {
        ADD_FAILURE() << mapped.error().message();
      }
      return std::nullopt;
    }
    return buffer;
  }
  std::string skip_reason_;
};

// VFIO_DMA_MAP_FLAG_READ alone, IOMMU_IOAS_MAP without WRITEABLE: the device
// reads from it, and cannot write into it.
TEST_P(vfio_dma_permission_test, read_only_mapping) {
  auto ro = map_with(dma_read, "read-only");
  if (!ro && !skip_reason_.empty()) FAIL() << skip_reason_;  // every IOMMU maps read-only
  ASSERT_TRUE(ro);
  // The refused write first: QEMU's IOMMUs check the permission (and log the
  // fault) when they walk the page table, and a translation cached by an
  // earlier read is refused without a fault record.
  std::memset(ro->memory.bytes(), int(kPattern), kBufferSize);
  fill_random(src_->bytes().first(copy_size()));
  auto witness = fault_witness();
  ASSERT_NO_FATAL_FAILURE(blocked_copy(src_->region.iova, ro->region.iova, copy_size()));
  EXPECT_TRUE(all_pattern(ro->bytes())) << "the device wrote into a read-only mapping";
  witness.expect_caught(ro->region.iova, copy_size(),
                        [&] { return blocked_copy_again(src_->region.iova, ro->region.iova, copy_size()); });

  fill_random(ro->bytes().first(copy_size()));
  ASSERT_NO_FATAL_FAILURE(good_copy(ro->region.iova, ro->bytes().first(copy_size()), dst_->region.iova,
                                    dst_->bytes().first(copy_size()), "a copy out of the read-only mapping"));
  EXPECT_EQ(check(iommu_->unmap(ro->region.iova, ro->region.size)), kBufferSize);
}

// VFIO_DMA_MAP_FLAG_WRITE alone, IOMMU_IOAS_MAP without READABLE: the device
// writes into it, and cannot read from it. An IOMMU whose page tables have
// no write-only entry may refuse the map (SKIP).
TEST_P(vfio_dma_permission_test, write_only_mapping) {
  auto wo = map_with(dma_write, "write-only");
  if (!wo && !skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  ASSERT_TRUE(wo);
  // The refused read first (see read_only_mapping).
  fill_random(wo->bytes());
  std::memset(dst_->memory.bytes(), int(kPattern), kBufferSize);
  auto witness = fault_witness();
  ASSERT_NO_FATAL_FAILURE(blocked_copy(wo->region.iova, dst_->region.iova, copy_size()));
  // What the device would have read is random: any of it in the destination
  // came through the write-only mapping.
  for (std::size_t at = 0; at < copy_size(); at += 64) {
    const std::size_t n = std::min<std::size_t>(64, copy_size() - at);
    ASSERT_NE(std::memcmp(dst_->memory.bytes() + at, wo->memory.bytes() + at, n), 0)
        << "data read through a write-only mapping reached the destination at offset " << at;
  }
  witness.expect_caught(wo->region.iova, copy_size(),
                        [&] { return blocked_copy_again(wo->region.iova, dst_->region.iova, copy_size()); });

  fill_random(src_->bytes().first(copy_size()));
  ASSERT_NO_FATAL_FAILURE(good_copy(src_->region.iova, src_->bytes().first(copy_size()), wo->region.iova,
                                    wo->bytes().first(copy_size()), "a copy into the write-only mapping"));
  EXPECT_EQ(check(iommu_->unmap(wo->region.iova, wo->region.size)), kBufferSize);
}

// An IOAS of the test's own on the fixture's iommufd, destroyed on exit.
class Ioas {
 public:
  static Result<Ioas> alloc(int iommufd) {
    iommu_ioas_alloc alloc{};
    alloc.size = sizeof(alloc);
    if (::ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc) != 0) {
      const int err = errno;
      return std::unexpected(make_error(err, "IOMMU_IOAS_ALLOC"));
    }
    return Ioas(iommufd, alloc.out_ioas_id);
  }
  Ioas(Ioas&& other) noexcept : fd_(other.fd_), id_(std::exchange(other.id_, 0)) {}
  Ioas& operator=(Ioas&&) = delete;
  ~Ioas() {
    if (id_ != 0) (void)destroy(fd_, id_);
  }
  std::uint32_t id() const { return id_; }
  Result<void> map(const DmaRegion& region) const {
    iommu_ioas_map map{};
    map.size = sizeof(map);
    map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    map.ioas_id = id_;
    map.user_va = reinterpret_cast<std::uintptr_t>(region.vaddr);
    map.length = region.size;
    map.iova = region.iova;
    if (::ioctl(fd_, IOMMU_IOAS_MAP, &map) != 0) {
      const int err = errno;
      return std::unexpected(make_error(err, "IOMMU_IOAS_MAP", fmt::format("IOAS {} IOVA {:#x}", id_, region.iova)));
    }
    return {};
  }
  // IOMMU_DESTROY of any object: 0 or the errno.
  static int destroy(int iommufd, std::uint32_t id) {
    iommu_destroy destroy{};
    destroy.size = sizeof(destroy);
    destroy.id = id;
    return ::ioctl(iommufd, IOMMU_DESTROY, &destroy) == 0 ? 0 : errno;
  }

 private:
  Ioas(int fd, std::uint32_t id) : fd_(fd), id_(id) {}
  int fd_;
  std::uint32_t id_;
};

class vfio_iommufd_object_test : public vfio_dma_state_fixture {
 protected:
  void SetUp() override {
    vfio_dma_state_fixture::SetUp();
    if (IsSkipped() || HasFailure()) return;
    other_.emplace(check(Ioas::alloc(iommu_->iommufd())));
  }
  // The fixture's region and buffers mapped at the same IOVAs in the other
  // IOAS: the driver's rings are where it put them, whichever IOAS the
  // device is attached to.
  void map_fixture_into_other() {
    for (const DmaRegion* region : {&region_->region, &src_->region, &dst_->region}) check(other_->map(*region));
  }
  std::optional<Ioas> other_;
};

// After a detach the device translates through nothing: its copy is
// blocked. Then the IOAS has no user and can be destroyed, and the device
// attached to another IOAS copies through that one.
TEST_P(vfio_iommufd_object_test, detach_then_attach_elsewhere) {
  ASSERT_NO_FATAL_FAILURE(copy_and_verify(size_));
  ASSERT_NO_FATAL_FAILURE(map_fixture_into_other());
  check(device_->detach_ioas());

  fill_random(src_->bytes().first(size_));
  std::memset(dst_->memory.bytes(), int(kPattern), kBufferSize);
  auto log = KernelLogReader::open();
  // Detached, the device reaches none of its memory, its own rings included:
  // a driver whose device fetches commands from memory (nvme) may see the
  // copy fail. Whatever the copy returned, nothing may arrive.
  auto copied = driver_->memcpy(src_->region.iova, dst_->region.iova, size_);
  fmt::print("# the copy while detached returned {}\n", copied ? "success" : copied.error().message());
  EXPECT_TRUE(all_pattern(dst_->bytes())) << "a detached device's copy wrote into host memory";
  if (log) {
    // A detached device sits in a blocking domain: whether its faults name
    // the IOVA depends on the IOMMU (Intel reports the missing context
    // entry); the data check above is the verdict, the log is shown.
    for (const auto& message : log->read_new()) {
      if (parse_iommu_fault(message)) fmt::print("# fault while detached: {}\n", message);
    }
  }

  EXPECT_EQ(Ioas::destroy(iommu_->iommufd(), iommu_->ioas_id()), 0)
      << "the IOAS the device was detached from cannot be destroyed";
  check(device_->attach_ioas(other_->id()));
  // A device that stopped on the failed DMA starts again from scratch.
  (void)driver_->remove();  // the device cannot reach its rings from here: the clean-up may fail
  check(driver_->init(region_->region));
  ASSERT_NO_FATAL_FAILURE(copy_and_verify(size_));
}

// IOMMU_DESTROY of the IOAS the device is attached to fails with EBUSY and
// changes nothing: the device still copies through it.
TEST_P(vfio_iommufd_object_test, destroy_ioas_in_use_fails) {
  EXPECT_EQ(Ioas::destroy(iommu_->iommufd(), iommu_->ioas_id()), EBUSY);
  ASSERT_NO_FATAL_FAILURE(copy_and_verify(size_));
  // Its mappings are all still there: unmapping src_ reports its length.
  EXPECT_EQ(check(iommu_->unmap(src_->region.iova, src_->region.size)), src_->region.size);
}

// Attaching while attached replaces the IOAS: the same IOVAs then reach the
// other IOAS's memory, and attaching back reaches the first's again.
TEST_P(vfio_iommufd_object_test, replace_ioas) {
  const auto other_src = check(DmaBuffer::allocate(Backing::anonymous, kBufferSize));
  const auto other_dst = check(DmaBuffer::allocate(Backing::anonymous, kBufferSize));
  for (auto [memory, iova] : {std::pair{&other_src, src_->region.iova}, std::pair{&other_dst, dst_->region.iova}}) {
    check(other_->map({memory->bytes(), iova, kBufferSize}));
  }
  check(other_->map(region_->region));

  auto replaced = device_->attach_ioas(other_->id());
  if (!replaced && (replaced.error().errnum == EBUSY || replaced.error().errnum == EINVAL)) {
    GTEST_SKIP() << "this kernel does not replace an attached IOAS: " << replaced.error().message();
  }
  check(replaced);
  const std::span<std::byte> their_src{other_src.bytes(), size_}, their_dst{other_dst.bytes(), size_};
  fill_random(their_src);
  std::memset(dst_->memory.bytes(), int(kPattern), kBufferSize);
  ASSERT_NO_FATAL_FAILURE(good_copy(src_->region.iova, their_src, dst_->region.iova, their_dst,
                                    "a copy after the replace, in the new IOAS"));
  EXPECT_TRUE(all_pattern(dst_->bytes())) << "after the replace, the copy also wrote through the old IOAS";

  check(device_->attach_ioas(iommu_->ioas_id()));
  std::memset(their_dst.data(), int(kPattern), size_);
  ASSERT_NO_FATAL_FAILURE(copy_and_verify(size_));
  EXPECT_TRUE(all_pattern(their_dst)) << "after replacing back, the copy also wrote through the other IOAS";
}

INSTANTIATE_TEST_SUITE_P(vfio_dma_unmap_test, vfio_dma_unmap_test, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);
INSTANTIATE_TEST_SUITE_P(vfio_dma_permission_test, vfio_dma_permission_test, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);
INSTANTIATE_TEST_SUITE_P(vfio_iommufd_object_test, vfio_iommufd_object_test, testing::Values(IommuMode::iommufd),
                         harness::mode_variant_name);

}  // namespace
}  // namespace vfiolab
