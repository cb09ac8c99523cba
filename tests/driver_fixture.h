// The fixture of the device DMA tests: an Iommu in the mode under test, the
// device opened in it, its vfiolab driver initialised with its region, and
// two 64 KiB buffers (src_, dst_) mapped at fresh IOVAs; with the checks the
// tests share (a copy verified byte for byte, the interrupts that fired, an
// IOMMU fault in the kernel log). The gtest fixture's name is the suite name
// in KTAP, so programs derive named fixtures from it.
#pragma once

#include "device.h"

#include "vfiolab/drivers.h"
#include "vfiolab/iommu_fault.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <random>
#include <thread>

namespace vfiolab {

inline constexpr std::size_t kBufferSize = 64 * 1024;
inline constexpr std::byte kPattern{0x5a};
inline constexpr std::chrono::milliseconds kMsiTimeout{2000};
// DEFAULT_RATELIMIT_INTERVAL, the window of the kernel's fault messages.
inline constexpr std::chrono::milliseconds kFaultLogWindow{5500};

// Before a fault whose message a test waits for: when the kernel's rate
// limit on Intel VT-d fault messages has no room left in its window (the
// log says when it began), wait until the window ends. True when it
// waited.
inline bool wait_for_fault_log_room() {
  auto records = KernelLogReader::read_all();
  if (!records) return false;
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t now_usec = static_cast<std::uint64_t>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
  auto until = intel_fault_log_full_until(*records, now_usec, 2);
  if (!until) return false;
  // The printk clock and CLOCK_MONOTONIC agree to well under this margin;
  // the rate limit counts in jiffies.
  std::this_thread::sleep_for(std::chrono::microseconds(*until - now_usec) + std::chrono::milliseconds(100));
  return true;
}

// The kernel logs the IOMMU's fault from its fault interrupt, shortly
// after the DMA. Those messages are rate-limited (Intel's dmar_fault:
// 10 messages per 5 s, two or three per fault), so a fault that found the
// limit used up is made again once the window has passed. For `bdf`, the
// device whose DMA the IOMMU blocked at [iova, iova + size).
inline void expect_fault_logged(KernelLogReader& log, const Bdf& bdf, std::uint64_t iova, std::uint64_t size,
                                const std::function<Result<void>()>& fault_again) {
  std::vector<std::string> faults;
  auto seen = [&](std::chrono::steady_clock::duration wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
      for (const auto& message : log.read_new()) {
        auto fault = parse_iommu_fault(message);
        if (!fault) continue;
        if (fault_matches(*fault, bdf, iova, size)) return true;
        faults.push_back(message);
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !log.wait(left)) return false;
    }
  };
  if (seen(std::chrono::seconds(2))) return;
  if (auto silent = iommu_logs_no_faults(bdf)) {
    GTEST_SKIP() << "the data checks passed; the fault log cannot be checked: " << *silent;
  }
  // The message was most likely rate-limited: wait for the window to end
  // (where the log shows when; else a whole window) and fault again.
  if (!wait_for_fault_log_room()) std::this_thread::sleep_for(kFaultLogWindow);
  if (seen(std::chrono::seconds(0))) return;  // logged late after all
  if (auto again = fault_again(); !again) {
    ADD_FAILURE() << "no IOMMU fault logged, and the copy could not be made again: " << again.error().message();
    return;
  }
  if (seen(std::chrono::seconds(3))) return;
  ADD_FAILURE() << fmt::format("no IOMMU fault logged for {} at IOVA {:#x}..{:#x}, twice; other faults: {}",
                               bdf.str(), iova, iova + size - 1,
                               faults.empty() ? "none" : fmt::format("{}", fmt::join(faults, " | ")));
}

// Whether the device ran a copy the IOMMU must block: a driver that sees
// DMA errors (reports_dma_errors()) must report EIO; one that cannot
// reports success, or EIO where the device noticed after all. Anything
// else (refused, never started, timed out) means no DMA was tried, and the
// data, interrupt and fault-log checks after it would prove nothing.
inline testing::AssertionResult blocked_copy_ran(const Driver& driver, const Result<void>& copied) {
  if (copied && driver.reports_dma_errors()) {
    return testing::AssertionFailure() << "the copy the IOMMU must block reported success, and the "
                                       << driver.name() << " driver sees DMA errors";
  }
  if (!copied && copied.error().errnum != EIO) {
    return testing::AssertionFailure() << "the copy the IOMMU must block did not run: " << copied.error();
  }
  return testing::AssertionSuccess();
}

class vfio_pci_driver_test : public testing::TestWithParam<IommuMode> {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(GetParam()));
    iommu_ = iommu;
    VFIOLAB_ASSIGN_OR_SKIP(device, PciDevice::open(harness::device_bdf(), iommu_));
    device_ = std::move(device);
    VFIOLAB_ASSIGN_OR_SKIP(driver, probe_driver(*device_));
    driver_ = std::move(driver);
    allocator_.emplace(check(iommu_->iova_allocator(driver_->iova_limit())));

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
    if (driver_) VFIOLAB_EXPECT_OK(driver_->remove());
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

  void expect_fault_logged(KernelLogReader& log, std::uint64_t iova, std::uint64_t size,
                           const std::function<Result<void>()>& fault_again) {
    vfiolab::expect_fault_logged(log, device_->bdf(), iova, size, fault_again);
  }

  testing::AssertionResult blocked_copy_ran(const Result<void>& copied) const {
    return vfiolab::blocked_copy_ran(*driver_, copied);
  }

  // A blocked copy once more, for a fault message the rate limit ate; an
  // error when the device did not run it.
  Result<void> blocked_copy_again(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size) {
    auto ran = blocked_copy_ran(driver_->memcpy(src_iova, dst_iova, size));
    if (!ran) return std::unexpected(make_error(0, "blocked copy", ran.message()));
    return {};
  }
  Result<void> faulting_copy_again() { return blocked_copy_again(src_->region.iova, dst_->region.iova, size_); }

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

}  // namespace vfiolab
