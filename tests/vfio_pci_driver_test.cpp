// vfio_pci_driver_test: make the device itself copy memory and send MSIs
// through its vfiolab driver, in every IOMMU mode, and check what arrived:
// the data of a good copy byte for byte, nothing of a copy the IOMMU must
// block (with the fault in the kernel log), and the interrupts that fired.
#include "driver_fixture.h"
#include "scope_exit.h"

#include <bit>

namespace vfiolab {
namespace {

using namespace std::chrono_literals;

constexpr auto kStormBudget = 2s;
// Long enough for edu's copies, 200 ms each under TCG.
VFIOLAB_TEST_TIMEOUT(storm_timeout, "vfio_pci_driver_test", 120);

TEST_P(vfio_pci_driver_test, init_remove) {
  auto again = driver_->init(region_->region);
  ASSERT_FALSE(again) << "init of an initialised driver succeeded";
  EXPECT_EQ(again.error().errnum, EBUSY) << again.error().message();
  for (int i = 0; i < 5; ++i) {
    VFIOLAB_ASSERT_OK(driver_->remove());
    EXPECT_FALSE(driver_->initialized());
    EXPECT_EQ(device_->enabled_irq_count(), 0u) << "remove left interrupts enabled";
    check(driver_->init(region_->region), fmt::format("init #{}", i + 2));
    EXPECT_GT(driver_->max_memcpy_size(), 0u);
    EXPECT_GT(driver_->max_memcpy_count(), 0u);
  }
  // The device works after all that.
  copy_and_verify(size_);
}

// The largest copy a test makes: half of a 1 GiB region, source and
// destination side by side, as the kernel's selftests map.
constexpr std::uint64_t kMaxCopyRegion = 512ull << 20;

TEST_P(vfio_pci_driver_test, memcpy_success) {
  copy_and_verify(size_);
  // Four times what one copy can carry, cut into chunks of at most that.
  const std::uint64_t size = std::min(kMaxCopyRegion, 4 * driver_->max_memcpy_size());
  auto src = map_new(size);
  auto dst = map_new(size);
  ASSERT_TRUE(src && dst);
  fill_random(src->bytes());
  std::memset(dst->memory.bytes(), 0, size);
  const auto start = std::chrono::steady_clock::now();
  check(memcpy_chunked(*driver_, src->region.iova, dst->region.iova, size));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(std::memcmp(src->memory.bytes(), dst->memory.bytes(), size), 0)
      << "the destination differs from the source after a chunked copy of " << size << " bytes";
  fmt::print("# memcpy_success: {} {}: {} bytes in {} chunk(s) of at most {} in {:.2f} s\n", driver_->name(),
             iommu_->mode_name(), size, (size + driver_->max_memcpy_size() - 1) / driver_->max_memcpy_size(),
             driver_->max_memcpy_size(), seconds);
}

// A 1 GiB region, mapped whole, its first half copied to its second in
// chunks of the driver's largest copy, byte-checked. Where the device is
// too slow to carry that in kLargeCopyBudget (edu under TCG: 4 KiB a copy,
// 200 ms each), the test SKIPs naming its rate, measured on a copy of
// four chunks first. A fixture of its own, in one IOMMU mode: the mapping
// pins 1 GiB of the machine's memory.
class vfio_pci_driver_large_test : public vfio_pci_driver_test {};

constexpr std::uint64_t kLargeRegion = 1ull << 30;
constexpr auto kLargeCopyBudget = 30s;
VFIOLAB_TEST_TIMEOUT(large_timeout, "vfio_pci_driver_large_test", 120);

TEST_P(vfio_pci_driver_large_test, memcpy_1g_region) {
  const std::uint64_t chunk = driver_->max_memcpy_size();
  const std::uint64_t half = kLargeRegion / 2;
  // The rate, from the fastest of four chunks (a stall of the machine in
  // one does not make the test SKIP), all four byte-checked.
  const std::uint64_t probe = std::min(half, 4 * chunk);
  {
    auto src = map_new(probe);
    auto dst = map_new(probe);
    ASSERT_TRUE(src && dst);
    fill_random(src->bytes());
    std::memset(dst->memory.bytes(), 0, probe);
    auto fastest = std::chrono::steady_clock::duration::max();
    for (const CopyChunk& piece : check(split_copy(src->region.iova, dst->region.iova, probe, chunk))) {
      const auto start = std::chrono::steady_clock::now();
      check(driver_->memcpy(piece.src_iova, piece.dst_iova, piece.size));
      fastest = std::min(fastest, std::chrono::steady_clock::now() - start);
    }
    ASSERT_EQ(std::memcmp(src->memory.bytes(), dst->memory.bytes(), probe), 0)
        << "the destination differs from the source after a chunked copy of " << probe << " bytes";
    const double rate = static_cast<double>(chunk) / std::max(1e-6, std::chrono::duration<double>(fastest).count());
    const double estimate = static_cast<double>(half) / rate;
    fmt::print("# memcpy_1g_region: {} copies {:.0f} bytes/s in copies of at most {} bytes (the fastest of four): "
               "half of the region would take about {:.1f} s\n",
               driver_->name(), rate, chunk, estimate);
    if (estimate > std::chrono::duration<double>(kLargeCopyBudget).count()) {
      GTEST_SKIP() << fmt::format(
          "the {} device is too slow for it: half of a 1 GiB region in copies of at most {} bytes would take over "
          "the test's {} s",
          driver_->name(), chunk, kLargeCopyBudget.count());
    }
  }
  auto region = map_new(kLargeRegion);
  ASSERT_TRUE(region);
  const auto bytes = region->bytes();
  const auto src = bytes.first(half);
  const auto dst = bytes.subspan(half, half);
  fill_random(src);
  std::memset(dst.data(), 0, half);
  const auto start = std::chrono::steady_clock::now();
  check(memcpy_chunked(*driver_, region->region.iova, region->region.iova + half, half));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  constexpr std::uint64_t kPiece = 1 << 20;  // where the first difference lies
  for (std::uint64_t at = 0; at < half; at += kPiece) {
    ASSERT_EQ(std::memcmp(src.data() + at, dst.data() + at, kPiece), 0)
        << "the destination differs from the source in the MiB at offset " << fmt::format("{:#x}", at)
        << " of a chunked copy of " << half << " bytes";
  }
  fmt::print("# memcpy_1g_region: {} {}: {} bytes in {} chunk(s) of at most {} in {:.2f} s ({:.0f} MiB/s)\n",
             driver_->name(), iommu_->mode_name(), half, (half + chunk - 1) / chunk, chunk, seconds,
             static_cast<double>(half) / seconds / (1 << 20));
}

// A DMA that starts at the last byte of one mapping and runs into the next,
// separately mapped page: both bytes must come from, and land in, the pages
// mapped there. The pages are mapped one by one and in reverse, so IOVA
// neighbours are host pages in the opposite order: an IOMMU that translates
// the first byte through the wrong one of two adjacent mappings moves it
// to or from the wrong page. (QEMU's virtio-iommu looks an address up as the
// interval [addr, addr + 1], which also overlaps the next mapping when addr
// is a mapping's last byte: see lab/lanes/*virtio.expect.) A fixture of its
// own, so the lab can run it on another device than the other tests.
class vfio_pci_driver_boundary_test : public vfio_pci_driver_test {};

TEST_P(vfio_pci_driver_boundary_test, memcpy_across_mapping_boundaries) {
  constexpr std::uint64_t kPage = 4096;
  constexpr std::uint64_t kPages = 16;
  constexpr std::uint64_t kSize = 2;
  // The page mappings go before the buffers do, however the test ends.
  std::optional<MappedBuffer> src, dst;
  std::vector<DmaRegion> pages;
  auto unmap = ScopeExit([&] {
    for (const auto& page : pages) (void)iommu_->unmap(page.iova, page.size);
  });
  // Page i of the IOVA block holds host page kPages - 1 - i, in each buffer.
  auto page_by_page = [&]() -> std::optional<MappedBuffer> {
    auto buffer = map_new(kPages * kPage);
    if (!buffer) return std::nullopt;
    EXPECT_EQ(check(iommu_->unmap(buffer->region)), kPages * kPage);
    for (std::uint64_t i = 0; i < kPages; ++i) {
      DmaRegion page{buffer->memory.bytes() + (kPages - 1 - i) * kPage, buffer->region.iova + i * kPage, kPage};
      auto mapped = iommu_->map(page);
      VFIOLAB_EXPECT_OK(mapped);
      if (!mapped) return std::nullopt;
      pages.push_back(page);
    }
    return buffer;
  };
  auto host = [&](const MappedBuffer& buffer, std::uint64_t offset) {
    return buffer.memory.bytes() + (kPages - 1 - offset / kPage) * kPage + offset % kPage;
  };
  src = page_by_page();
  dst = page_by_page();
  ASSERT_TRUE(src && dst);
  fill_random(src->bytes());
  std::memset(dst->memory.bytes(), 0, kPages * kPage);

  std::vector<std::string> wrong;
  for (std::uint64_t k = 1; k < kPages; ++k) {
    const std::uint64_t offset = k * kPage - 1;  // the last byte of page k - 1
    auto copied = driver_->memcpy(src->region.iova + offset, dst->region.iova + offset, kSize);
    if (!copied && copied.error().errnum == EINVAL && k == 1) {
      GTEST_SKIP() << "the " << driver_->name() << " driver cannot copy " << kSize
                   << " bytes from an odd address: " << copied.error().message();
    }
    check(copied);
    for (std::uint64_t b = 0; b < kSize; ++b) {
      const auto want = std::to_integer<unsigned>(*host(*src, offset + b));
      const auto got = std::to_integer<unsigned>(*host(*dst, offset + b));
      if (want != got) {
        wrong.push_back(fmt::format("IOVA offset {:#x}: {:#04x}, source {:#04x}", offset + b, got, want));
      }
    }
  }
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " byte(s) wrong after copies across the " << kPages - 1
                             << " boundaries between page-sized mappings: " << fmt::format("{}", fmt::join(wrong, "; "));
}

// The IOMMU must stop a read from an IOVA that was mapped and no longer is:
// the copy warms the translation, the unmap must invalidate it.
TEST_P(vfio_pci_driver_test, memcpy_from_unmapped_iova) {
  copy_and_verify(size_);
  expect_read_from_unmapped_source_blocked("the failed copy");
}

// The IOMMU must stop a write to an IOVA that was mapped and no longer is.
TEST_P(vfio_pci_driver_test, memcpy_to_unmapped_iova) {
  copy_and_verify(size_);
  ASSERT_EQ(check(iommu_->unmap(dst_->region)), dst_->region.size);
  fill_random(src_->bytes());
  std::memset(dst_->memory.bytes(), static_cast<int>(kPattern), dst_->region.size);
  drain_interrupts();

  auto witness = fault_witness();
  auto copied = driver_->memcpy(src_->region.iova, dst_->region.iova, size_);
  const auto dst = dst_->bytes();
  EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](std::byte b) { return b == kPattern; }))
      << "the device wrote to memory whose IOVA was unmapped";
  ASSERT_TRUE(blocked_copy_ran(copied));
  expect_no_interrupt("the failed copy");
  witness.expect_caught(dst_->region.iova, size_, [&] { return faulting_copy_again(); });
}

TEST_P(vfio_pci_driver_test, send_msi) {
  if (!driver_->msi_vector()) GTEST_SKIP() << "the " << driver_->name() << " driver cannot make the device send an MSI";
  for (int i = 0; i < 10; ++i) {
    drain_interrupts();
    check(driver_->send_msi());
    expect_msi();
  }
}

// Copies, MSIs and a copy the IOMMU blocks, interleaved, ten rounds: the
// device keeps working after each fault, and an MSI sent during a copy
// arrives. The blocked copy is judged like memcpy_from_unmapped_iova's: its
// source is unmapped right after the device read it (a stale translation
// lets the data through), and the IOMMU must catch the fault: its fault
// interrupt every round where it has one, the printed record in the first
// round (see FaultWitness; a record a round waited out the kernel's rate
// limit, 55 s a mode on virtio-iommu).
constexpr int kMixRounds = 10;

TEST_P(vfio_pci_driver_test, mix_and_match) {
  for (int round = 0; round < kMixRounds; ++round) {
    SCOPED_TRACE(fmt::format("round {} of {}", round + 1, kMixRounds));
    fill_random(src_->bytes().first(size_));
    std::memset(dst_->memory.bytes(), 0, size_);
    drain_interrupts();
    check(driver_->memcpy_start(src_->region.iova, dst_->region.iova, size_));
    if (driver_->msi_vector()) {
      check(driver_->send_msi());
      expect_msi();
    }
    check(driver_->memcpy_wait());
    ASSERT_EQ(std::memcmp(src_->memory.bytes(), dst_->memory.bytes(), size_), 0)
        << "the copy before the blocked one, round " << round + 1;

    ASSERT_NO_FATAL_FAILURE(expect_read_from_unmapped_source_blocked("the blocked copy", round == 0));
    check(iommu_->map(src_->region));  // the device works on after its fault

    // A smaller copy at an offset after the fault, every third round and
    // the last (the next round's copy shows the recovery in the others;
    // edu's copies cost 200 ms each).
    if (round % 3 != 0 && round != kMixRounds - 1) continue;
    const std::uint64_t small = std::max<std::uint64_t>(size_ / 4, std::min<std::uint64_t>(size_, 512));
    const std::uint64_t offset = size_ - small;
    fill_random(src_->bytes().subspan(offset, small));
    check(driver_->memcpy(src_->region.iova + offset, dst_->region.iova + offset, small));
    ASSERT_EQ(std::memcmp(src_->memory.bytes() + offset, dst_->memory.bytes() + offset, small), 0)
        << "the copy after the blocked one, round " << round + 1;
  }
}

// Starts of the most a start can carry (the driver's largest copy, its
// largest count), for a while; prints the rate. Each start's destination is
// cleared first and checked after.
TEST_P(vfio_pci_driver_test, memcpy_storm) {
  const std::uint64_t size = std::min(kMaxCopyRegion, driver_->max_memcpy_size());
  const std::uint64_t count = driver_->max_memcpy_count();
  ASSERT_EQ(size, driver_->max_memcpy_size()) << "the storm's copies are smaller than the device's largest";
  auto src = map_new(size);
  auto dst = map_new(size);
  ASSERT_TRUE(src && dst);
  std::uint64_t copies = 0;
  int starts = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = std::chrono::steady_clock::duration::zero();
  do {
    fill_random(src->bytes());
    std::memset(dst->memory.bytes(), 0, size);
    check(driver_->memcpy_start(src->region.iova, dst->region.iova, size, count));
    check(driver_->memcpy_wait(60s));
    ASSERT_EQ(std::memcmp(src->memory.bytes(), dst->memory.bytes(), size), 0)
        << "the destination differs from the source after start " << starts + 1 << " of " << count << " copies of "
        << size << " bytes";
    copies += count;
    ++starts;
    elapsed = std::chrono::steady_clock::now() - start;
  } while (elapsed < kStormBudget);
  const double seconds = std::chrono::duration<double>(elapsed).count();
  const double bytes = static_cast<double>(copies * size);
  fmt::print("# memcpy_storm: {} {}: {} start(s) of {} copies of {} bytes ({} bytes a start) in {:.2f} s: {:.0f} "
             "bytes/s ({:.2f} MiB/s)\n",
             driver_->name(), iommu_->mode_name(), starts, count, size, count * size, seconds, bytes / seconds,
             bytes / seconds / (1 << 20));
}

// INTx is a level: the device holds its line asserted. VFIO delivers it once
// and masks it (automask) until the user unmasks; unmasked with the line
// still asserted, it is delivered again; an explicit mask holds it back until
// the unmask; a deasserted line delivers nothing. The device asserts the line
// through its driver, so what is checked is the kernel's INTx path, not a
// software trigger. A fixture of its own: INTx does not depend on the IOMMU
// mode, and the lab runs it beside the driver tests.
class vfio_pci_intx_test : public vfio_pci_driver_test {};

TEST_P(vfio_pci_intx_test, level_delivery_and_masking) {
  const auto intx = check(device_->irq_info(IrqIndex::intx));
  if (intx.count == 0) GTEST_SKIP() << device_->name() << " has no INTx";
  if (auto enabled = device_->enabled_irq_index()) {  // the driver's MSI: INTx needs it off
    check(device_->disable_irqs(*enabled));
  }
  check(device_->enable_irqs(IrqIndex::intx, 1));
  auto off = ScopeExit([&] {
    (void)driver_->set_intx(false);
    (void)device_->disable_irqs(IrqIndex::intx);
  });
  EventFd& line = device_->irq_eventfd(0);
  auto silent = [&](std::string_view when) {
    const auto got = check(line.wait(std::chrono::milliseconds(300)));
    EXPECT_FALSE(got.has_value()) << "INTx delivered " << got.value_or(0) << " time(s) " << when;
  };
  auto once = [&](std::string_view when) {
    const auto got = check(line.wait(kMsiTimeout));
    EXPECT_EQ(got.value_or(0), 1u) << "INTx not delivered once " << when;
  };

  silent("before the device asserted it");
  VFIOLAB_ASSERT_OK(driver_->set_intx(true));
  once("after the device asserted it");
  silent("while automasked, with the line still asserted");
  check(device_->unmask_intx());
  once("after the unmask, with the line still asserted");

  check(driver_->set_intx(false));
  check(device_->unmask_intx());
  silent("after the line was deasserted and unmasked");

  check(device_->mask_intx());
  check(driver_->set_intx(true));
  silent("while masked");
  check(device_->unmask_intx());
  once("after the unmask of an asserted, masked line");
}

INSTANTIATE_TEST_SUITE_P(vfio_pci_driver_test, vfio_pci_driver_test, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);
INSTANTIATE_TEST_SUITE_P(vfio_pci_driver_boundary_test, vfio_pci_driver_boundary_test,
                         testing::ValuesIn(harness::all_modes()), harness::mode_variant_name);

INSTANTIATE_TEST_SUITE_P(vfio_pci_driver_large_test, vfio_pci_driver_large_test, testing::Values(IommuMode::iommufd),
                         harness::mode_variant_name);
INSTANTIATE_TEST_SUITE_P(vfio_pci_intx_test, vfio_pci_intx_test, testing::Values(IommuMode::iommufd),
                         harness::mode_variant_name);

}  // namespace
}  // namespace vfiolab
