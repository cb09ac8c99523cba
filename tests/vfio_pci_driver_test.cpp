// vfio_pci_driver_test: make the device itself copy memory and send MSIs
// through its vfiolab driver, in every IOMMU mode, and check what arrived:
// the data of a good copy byte for byte, nothing of a copy the IOMMU must
// block (with the fault in the kernel log), and the interrupts that fired.
#include "device.h"

#include "vfiolab/driver.h"
#include "vfiolab/iommu_fault.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <thread>

namespace vfiolab {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kBufferSize = 64 * 1024;
constexpr std::byte kPattern{0x5a};
constexpr auto kMsiTimeout = 2s;
constexpr auto kStormBudget = 2s;
// DEFAULT_RATELIMIT_INTERVAL, the window of the kernel's fault messages.
constexpr auto kFaultLogWindow = 5500ms;
// Long enough for edu's copies, 200 ms each under TCG.
VFIOLAB_TEST_TIMEOUT(storm_timeout, "vfio_pci_driver_test", 120);

class vfio_pci_driver_test : public testing::TestWithParam<IommuMode> {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(GetParam()));
    iommu_ = iommu;
    VFIOLAB_ASSIGN_OR_SKIP(device, PciDevice::open(harness::device_bdf(), iommu_));
    device_ = std::move(device);
    VFIOLAB_ASSIGN_OR_SKIP(driver, probe_driver(*device_));
    driver_ = std::move(driver);
    allocator_.emplace(iommu_->iova_allocator(driver_->iova_limit()));

    region_ = map_new(driver_->region_size());
    src_ = map_new(kBufferSize);
    dst_ = map_new(kBufferSize);
    if (HasFailure() || !region_ || !src_ || !dst_) return;
    if (auto init = driver_->init(region_->region); !init) {
      if (init.error().unsupported) GTEST_SKIP() << init.error().message();
      FAIL() << init.error().message();
    }
    size_ = std::min<std::uint64_t>(driver_->max_memcpy_size(), kBufferSize);
    rng_.seed(std::random_device{}());
  }

  void TearDown() override {
    if (driver_) driver_->remove();
  }

  // A buffer mapped at a fresh IOVA the device can reach.
  std::optional<MappedBuffer> map_new(std::uint64_t size) {
    auto buffer = iommu_->map_new(*allocator_, Backing::anonymous, size);
    if (!buffer) {
      ADD_FAILURE() << buffer.error().message();
      return std::nullopt;
    }
    return std::move(*buffer);
  }

  // An IOVA nothing is mapped at.
  std::uint64_t unmapped_iova() {
    auto iova = allocator_->allocate(kBufferSize);
    EXPECT_TRUE(iova) << iova.error();
    return iova.value_or(0);
  }

  void fill_random(std::span<std::byte> bytes) {
    for (auto& b : bytes) b = static_cast<std::byte>(rng_());
  }

  // Every enabled vector's eventfd, emptied.
  void drain_interrupts() {
    for (std::uint32_t v = 0; v < device_->enabled_irq_count(); ++v) (void)device_->irq_eventfd(v).read();
  }
  void expect_no_interrupt(std::string_view after) {
    for (std::uint32_t v = 0; v < device_->enabled_irq_count(); ++v) {
      auto count = device_->irq_eventfd(v).read();
      ASSERT_TRUE(count) << count.error().message();
      EXPECT_FALSE(count->has_value()) << "vector " << v << " fired " << count->value_or(0) << " time(s) after "
                                       << after;
    }
  }
  void expect_msi() {
    auto count = device_->irq_eventfd(*driver_->msi_vector()).wait(kMsiTimeout);
    ASSERT_TRUE(count) << count.error().message();
    EXPECT_TRUE(count->has_value()) << "no MSI on vector " << *driver_->msi_vector() << " within "
                                    << std::chrono::duration_cast<std::chrono::milliseconds>(kMsiTimeout).count()
                                    << " ms";
  }

  // The kernel logs the IOMMU's fault from its fault interrupt, shortly
  // after the DMA. Those messages are rate-limited (Intel's dmar_fault:
  // 10 messages per 5 s, two or three per fault), so a fault that found the
  // limit used up is made again once the window has passed.
  void expect_fault_logged(KernelLogReader& log, std::uint64_t iova, std::uint64_t size,
                           const std::function<Result<void>()>& fault_again) {
    std::vector<std::string> faults;
    auto seen = [&](std::chrono::steady_clock::duration wait) {
      const auto deadline = std::chrono::steady_clock::now() + wait;
      for (;;) {
        for (const auto& message : log.read_new()) {
          auto fault = parse_iommu_fault(message);
          if (!fault) continue;
          if (fault_matches(*fault, device_->bdf(), iova, size)) return true;
          faults.push_back(message);
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !log.wait(left)) return false;
      }
    };
    if (seen(2s)) return;
    if (auto silent = iommu_logs_no_faults(device_->bdf())) {
      GTEST_SKIP() << "the data checks passed; the fault log cannot be checked: " << *silent;
    }
    // The message was most likely rate-limited: wait for the window to end
    // (where the log shows when; else a whole window) and fault again.
    if (!wait_for_fault_log_room()) std::this_thread::sleep_for(kFaultLogWindow);
    if (seen(0s)) return;  // logged late after all
    if (auto again = fault_again(); !again) {
      ADD_FAILURE() << "no IOMMU fault logged, and the copy could not be made again: " << again.error().message();
      return;
    }
    if (seen(3s)) return;
    ADD_FAILURE() << fmt::format("no IOMMU fault logged for {} at IOVA {:#x}..{:#x}, twice; other faults: {}",
                                 device_->name(), iova, iova + size - 1,
                                 faults.empty() ? "none" : fmt::format("{}", fmt::join(faults, " | ")));
  }

  // Before a fault whose message a test waits for: when the kernel's rate
  // limit on Intel VT-d fault messages has no room left in its window (the
  // log says when it began), wait until the window ends. True when it
  // waited.
  static bool wait_for_fault_log_room() {
    auto records = KernelLogReader::read_all();
    if (!records) return false;
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const std::uint64_t now_usec = static_cast<std::uint64_t>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
    auto until = intel_fault_log_full_until(*records, now_usec, 2);
    if (!until) return false;
    // The printk clock and CLOCK_MONOTONIC agree to well under this margin;
    // the rate limit counts in jiffies.
    std::this_thread::sleep_for(std::chrono::microseconds(*until - now_usec) + 100ms);
    return true;
  }

  // The blocked copy once more. Its outcome is the device's business (see
  // reports_dma_errors()); only a copy that could not be started or did not
  // finish is an error here.
  Result<void> faulting_copy_again() {
    auto copied = driver_->memcpy(src_->region.iova, dst_->region.iova, size_);
    if (!copied && copied.error().errnum != EIO) return copied;
    return {};
  }

  void copy_and_verify(std::uint64_t size) {
    fill_random(src_->bytes().first(size));
    std::memset(dst_->memory.bytes(), 0, size);
    auto copied = driver_->memcpy(src_->region.iova, dst_->region.iova, size);
    ASSERT_TRUE(copied) << copied.error().message();
    ASSERT_EQ(std::memcmp(src_->memory.bytes(), dst_->memory.bytes(), size), 0)
        << "the destination differs from the source after a copy of " << size << " bytes";
  }

  std::optional<MappedBuffer> src_;  // buffers outlive the mappings of them
  std::optional<MappedBuffer> dst_;
  std::optional<MappedBuffer> region_;
  std::shared_ptr<Iommu> iommu_;
  std::unique_ptr<PciDevice> device_;
  std::unique_ptr<Driver> driver_;
  std::optional<IovaAllocator> allocator_;
  std::uint64_t size_ = 0;
  std::mt19937_64 rng_;
};

TEST_P(vfio_pci_driver_test, init_remove) {
  auto again = driver_->init(region_->region);
  ASSERT_FALSE(again) << "init of an initialised driver succeeded";
  EXPECT_EQ(again.error().errnum, EBUSY) << again.error().message();
  for (int i = 0; i < 5; ++i) {
    driver_->remove();
    EXPECT_FALSE(driver_->initialized());
    EXPECT_EQ(device_->enabled_irq_count(), 0u) << "remove left interrupts enabled";
    auto init = driver_->init(region_->region);
    ASSERT_TRUE(init) << "init #" << i + 2 << ": " << init.error().message();
    EXPECT_GT(driver_->max_memcpy_size(), 0u);
    EXPECT_GT(driver_->max_memcpy_count(), 0u);
  }
  // The device works after all that.
  copy_and_verify(size_);
}

TEST_P(vfio_pci_driver_test, memcpy_success) {
  copy_and_verify(size_);
  // Larger than one copy can carry: cut into chunks.
  const std::uint64_t size = std::min<std::uint64_t>(kBufferSize, 4 * driver_->max_memcpy_size());
  fill_random(src_->bytes().first(size));
  std::memset(dst_->memory.bytes(), 0, size);
  auto copied = memcpy_chunked(*driver_, src_->region.iova, dst_->region.iova, size);
  ASSERT_TRUE(copied) << copied.error().message();
  EXPECT_EQ(std::memcmp(src_->memory.bytes(), dst_->memory.bytes(), size), 0);
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
  struct Unmap {
    Iommu& iommu;
    std::vector<DmaRegion>& pages;
    ~Unmap() {
      for (const auto& page : pages) (void)iommu.try_unmap(page.iova, page.size);
    }
  } unmap{*iommu_, pages};
  // Page i of the IOVA block holds host page kPages - 1 - i, in each buffer.
  auto page_by_page = [&]() -> std::optional<MappedBuffer> {
    auto buffer = map_new(kPages * kPage);
    if (!buffer) return std::nullopt;
    EXPECT_EQ(iommu_->unmap(buffer->region), kPages * kPage);
    for (std::uint64_t i = 0; i < kPages; ++i) {
      DmaRegion page{buffer->memory.bytes() + (kPages - 1 - i) * kPage, buffer->region.iova + i * kPage, kPage};
      auto mapped = iommu_->try_map(page);
      EXPECT_TRUE(mapped) << mapped.error().message();
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
    ASSERT_TRUE(copied) << copied.error().message();
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
  ASSERT_EQ(iommu_->unmap(src_->region), src_->region.size);
  fill_random(src_->bytes());
  std::memset(dst_->memory.bytes(), static_cast<int>(kPattern), size_);
  drain_interrupts();

  wait_for_fault_log_room();
  auto log = KernelLogReader::open();
  auto copied = driver_->memcpy(src_->region.iova, dst_->region.iova, size_);
  const auto dst = dst_->bytes().first(size_);
  const auto src = src_->bytes().first(size_);
  for (std::size_t at = 0; at < size_; at += 64) {
    ASSERT_NE(std::memcmp(dst.data() + at, src.data() + at, std::min<std::size_t>(64, size_ - at)), 0)
        << "data from the unmapped source reached the destination at offset " << at;
  }
  if (driver_->reports_dma_errors()) {
    ASSERT_FALSE(copied) << "the copy from an unmapped IOVA reported success";
    EXPECT_EQ(copied.error().errnum, EIO) << copied.error().message();
    EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](std::byte b) { return b == kPattern; }))
        << "the destination changed although the copy failed";
  } else {
    fmt::print("# {} cannot see DMA faults: the copy returned {}\n", driver_->name(),
               copied ? "success" : copied.error().message());
  }
  expect_no_interrupt("the failed copy");
  if (!log) GTEST_SKIP() << "cannot check the kernel log: " << log.error().message();
  expect_fault_logged(*log, src_->region.iova, size_,
                      [&] { return faulting_copy_again(); });
}

// The IOMMU must stop a write to an IOVA that was mapped and no longer is.
TEST_P(vfio_pci_driver_test, memcpy_to_unmapped_iova) {
  copy_and_verify(size_);
  ASSERT_EQ(iommu_->unmap(dst_->region), dst_->region.size);
  fill_random(src_->bytes());
  std::memset(dst_->memory.bytes(), static_cast<int>(kPattern), dst_->region.size);
  drain_interrupts();

  wait_for_fault_log_room();
  auto log = KernelLogReader::open();
  auto copied = driver_->memcpy(src_->region.iova, dst_->region.iova, size_);
  const auto dst = dst_->bytes();
  EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](std::byte b) { return b == kPattern; }))
      << "the device wrote to memory whose IOVA was unmapped";
  if (driver_->reports_dma_errors()) {
    ASSERT_FALSE(copied) << "the copy to an unmapped IOVA reported success";
    EXPECT_EQ(copied.error().errnum, EIO) << copied.error().message();
  } else {
    fmt::print("# {} cannot see DMA faults: the copy returned {}\n", driver_->name(),
               copied ? "success" : copied.error().message());
  }
  expect_no_interrupt("the failed copy");
  if (!log) GTEST_SKIP() << "cannot check the kernel log: " << log.error().message();
  expect_fault_logged(*log, dst_->region.iova, size_,
                      [&] { return faulting_copy_again(); });
}

TEST_P(vfio_pci_driver_test, send_msi) {
  if (!driver_->msi_vector()) GTEST_SKIP() << "the " << driver_->name() << " driver cannot make the device send an MSI";
  for (int i = 0; i < 10; ++i) {
    drain_interrupts();
    auto sent = driver_->send_msi();
    ASSERT_TRUE(sent) << sent.error().message();
    expect_msi();
  }
}

// Copies, MSIs and a copy the IOMMU blocks, interleaved: the device keeps
// working after a fault, and an MSI sent during a copy arrives.
TEST_P(vfio_pci_driver_test, mix_and_match) {
  const std::uint64_t nowhere = unmapped_iova();
  for (int round = 0; round < 4; ++round) {
    fill_random(src_->bytes().first(size_));
    std::memset(dst_->memory.bytes(), 0, size_);
    drain_interrupts();
    ASSERT_TRUE(driver_->memcpy_start(src_->region.iova, dst_->region.iova, size_));
    if (driver_->msi_vector()) {
      auto sent = driver_->send_msi();
      ASSERT_TRUE(sent) << sent.error().message();
      expect_msi();
    }
    auto waited = driver_->memcpy_wait();
    ASSERT_TRUE(waited) << waited.error().message();
    ASSERT_EQ(std::memcmp(src_->memory.bytes(), dst_->memory.bytes(), size_), 0) << "round " << round;

    if (round == 1) {  // once: the kernel rate-limits its fault messages
      auto blocked = driver_->memcpy(nowhere, dst_->region.iova, size_);
      if (driver_->reports_dma_errors()) {
        EXPECT_FALSE(blocked) << "a copy from an unmapped IOVA reported success";
      }
    }
    // Smaller copies at an offset.
    const std::uint64_t small = std::max<std::uint64_t>(size_ / 4, std::min<std::uint64_t>(size_, 512));
    const std::uint64_t offset = size_ - small;
    fill_random(src_->bytes().subspan(offset, small));
    auto copied = driver_->memcpy(src_->region.iova + offset, dst_->region.iova + offset, small);
    ASSERT_TRUE(copied) << copied.error().message();
    EXPECT_EQ(std::memcmp(src_->memory.bytes() + offset, dst_->memory.bytes() + offset, small), 0) << "round " << round;
  }
}

// As many copies as the device takes, for a while; prints the rate.
TEST_P(vfio_pci_driver_test, memcpy_storm) {
  fill_random(src_->bytes().first(size_));
  std::memset(dst_->memory.bytes(), 0, size_);
  const std::uint64_t count = driver_->max_memcpy_count();
  std::uint64_t copies = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = std::chrono::steady_clock::duration::zero();
  do {
    auto started = driver_->memcpy_start(src_->region.iova, dst_->region.iova, size_, count);
    ASSERT_TRUE(started) << started.error().message();
    auto waited = driver_->memcpy_wait(60s);
    ASSERT_TRUE(waited) << waited.error().message();
    copies += count;
    elapsed = std::chrono::steady_clock::now() - start;
  } while (elapsed < kStormBudget);
  ASSERT_EQ(std::memcmp(src_->memory.bytes(), dst_->memory.bytes(), size_), 0);
  const double seconds = std::chrono::duration<double>(elapsed).count();
  const double bytes = static_cast<double>(copies * size_);
  fmt::print("# memcpy_storm: {} {}: {} copies of {} bytes ({} per start) in {:.2f} s: {:.0f} bytes/s ({:.2f} MiB/s)\n",
             driver_->name(), iommu_->mode_name(), copies, size_, count, seconds, bytes / seconds,
             bytes / seconds / (1 << 20));
}

INSTANTIATE_TEST_SUITE_P(vfio_pci_driver_test, vfio_pci_driver_test, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);
INSTANTIATE_TEST_SUITE_P(vfio_pci_driver_boundary_test, vfio_pci_driver_boundary_test,
                         testing::ValuesIn(harness::all_modes()), harness::mode_variant_name);

}  // namespace
}  // namespace vfiolab
