// The fixture of the device DMA tests: an Iommu in the mode under test, the
// device opened in it, its vfiolab driver (made by a DriverFactory: the
// registry's choice by default) initialised with its region, and two 64 KiB
// buffers (src_, dst_) mapped at fresh IOVAs; with the checks the tests
// share (a copy verified byte for byte, the interrupts that fired, an IOMMU
// fault in the kernel log). The gtest fixture's name is the suite name in
// KTAP, so programs derive named fixtures from it.
#pragma once

#include "device.h"
#include "driver_options.h"

#include "vfiolab/drivers.h"
#include "vfiolab/iommu_fault.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <thread>

namespace vfiolab {

inline constexpr std::size_t kBufferSize = 64 * 1024;
inline constexpr std::byte kPattern{0x5a};
inline constexpr std::chrono::milliseconds kMsiTimeout{2000};
// How long a test goes on making a blocked DMA again for its fault record
// (see expect_fault_logged).
inline constexpr std::chrono::seconds kFaultLogRetry{15};

// The kernel logs the IOMMU's fault from its fault interrupt, right after
// the DMA. For `bdf`, the device whose DMA the IOMMU blocked at
// [iova, iova + size). Those records are rate-limited (Intel's dmar_fault:
// 10 messages per 5 s, two or three per fault; virtio-iommu: 10 per 5 s).
// The window counts jiffies, which a busy TCG vCPU lets fall behind the
// clock: a fault 5.1 s after a full window's first message was still
// suppressed, so no wait computed from the log's timestamps is safe. A
// fault the limit ate is therefore made again, every half second or so,
// until one is printed (the first after the window's end is), for at most
// kFaultLogRetry. True when the record was found.
inline bool expect_fault_logged(KernelLogReader& log, const Bdf& bdf, std::uint64_t iova, std::uint64_t size,
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
  // Once a wait found the IOMMU silent in this run, the tests after it
  // (and mix_and_match's later rounds) SKIP for it without waiting again.
  const std::string silent_note = fmt::format("fault log silent: {}", bdf.str());
  const bool known_silent = harness::run_noted(silent_note);
  if (!known_silent && seen(std::chrono::seconds(2))) return true;
  if (auto silent = iommu_logs_no_faults(bdf)) {
    harness::note_for_run(silent_note);
    [&] { GTEST_SKIP() << "the data checks passed; the fault log cannot be checked: " << *silent; }();
    return false;
  }
  const auto start = std::chrono::steady_clock::now();
  int made = 0;
  while (std::chrono::steady_clock::now() - start < kFaultLogRetry) {
    if (auto again = fault_again(); !again) {
      ADD_FAILURE() << "no IOMMU fault logged, and the copy could not be made again: " << again.error().message();
      return false;
    }
    ++made;
    if (seen(std::chrono::milliseconds(500))) return true;
  }
  ADD_FAILURE() << fmt::format(
      "no IOMMU fault logged for {} at IOVA {:#x}..{:#x}, for the DMA and {} more made over {} s; other faults: {}",
      bdf.str(), iova, iova + size - 1, made, kFaultLogRetry.count(),
      faults.empty() ? "none" : fmt::format("{}", fmt::join(faults, " | ")));
  return false;
}

// Evidence that the IOMMU caught a DMA it blocked: taken before the DMA
// (FaultWitness::before), checked after it (expect_caught). Two witnesses:
//  - the IOMMU's fault interrupt (iommu_fault_irq_name()): its count in
//    /proc/interrupts must rise. No rate limit hides it, but it names
//    neither the device nor the address. The plan's +iommu-fault-log keeps
//    the programs that make faults from running side by side, so a rise is
//    this program's.
//  - the printed record, which names both: checked the first time each
//    test (in whichever IOMMU mode) gets here in a run of the program
//    (harness::run_noted: each test has a process of its own), and every time
//    where the IOMMU has no fault interrupt to count.
// A kernel that lets the DMA through fails the test's data checks; one that
// blocks it without a fault fails the interrupt; one that hides or
// misreports the fault fails the record.
class FaultWitness {
 public:
  static FaultWitness before(const Bdf& bdf) {
    FaultWitness witness = interrupt_before(bdf);
    if (!harness::run_noted("fault witness told")) {
      harness::note_for_run("fault witness told");
      fmt::print("# fault witness for {}: {}\n", bdf.str(),
                 witness.irq_ ? fmt::format("the IOMMU's fault interrupt {}, and the printed record once per test", *witness.irq_)
                              : std::string("the printed record every time (the IOMMU has no fault interrupt of its own to count)"));
    }
    witness.print_ = !witness.irq_ || !harness::run_noted(pattern());
    if (witness.print_) {
      auto log = KernelLogReader::open();
      if (log) {
        witness.log_.emplace(std::move(*log));
      } else {
        witness.log_error_ = log.error().message();
      }
    }
    return witness;
  }

  // The fault interrupt's count alone (for expect_interrupt()).
  static FaultWitness interrupt_before(const Bdf& bdf) {
    FaultWitness witness(bdf);
    witness.irq_ = iommu_fault_irq_name(bdf);
    if (witness.irq_) {
      if (auto count = witness.interrupts()) {
        witness.count_ = *count;
      } else {
        witness.irq_.reset();  // no line of its own (shared vectors): not countable
      }
    }
    return witness;
  }

  // After the DMA the IOMMU must have blocked at [iova, iova + size);
  // `fault_again` makes it once more, for a record the rate limit ate.
  void expect_caught(std::uint64_t iova, std::uint64_t size, const std::function<Result<void>()>& fault_again) {
    expect_interrupt();
    if (!print_) return;
    if (!log_) GTEST_SKIP() << "the data checks passed; cannot read the kernel log: " << log_error_;
    if (expect_fault_logged(*log_, bdf_, iova, size, fault_again)) harness::note_for_run(pattern());
  }

  // The fault interrupt alone, where the IOMMU has one to count.
  void expect_interrupt() {
    if (!irq_) return;
    const auto deadline = std::chrono::steady_clock::now() + kFaultInterruptTimeout;
    std::optional<std::uint64_t> now;
    for (;;) {
      now = interrupts();
      if (now && *now > count_) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        ADD_FAILURE() << fmt::format(
            "the IOMMU's fault interrupt {} did not fire within {} ms of a DMA it must block ({}: {} before, {} "
            "after)",
            *irq_, kFaultInterruptTimeout.count(), bdf_.str(), count_, now ? fmt::format("{}", *now) : "no line");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    count_ = *now;
  }

 private:
  static constexpr std::chrono::milliseconds kFaultInterruptTimeout{2000};

  explicit FaultWitness(const Bdf& bdf) : bdf_(bdf) {}

  std::optional<std::uint64_t> interrupts() const {
    std::ifstream file("/proc/interrupts");
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    return interrupt_count(text, *irq_);
  }
  // The running test without its mode, as this run's note that its
  // printed record was seen.
  static std::string pattern() {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    if (!info) return {};
    const std::string_view name = info->name();
    return fmt::format("fault record seen: {}.{}", info->test_suite_name(), name.substr(0, name.find('/')));
  }

  Bdf bdf_;
  std::optional<std::string> irq_;
  std::uint64_t count_ = 0;
  bool print_ = false;
  std::optional<KernelLogReader> log_;
  std::string log_error_;
};

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

// How a test gets its driver for the device it opened: not initialised yet.
using DriverFactory = std::function<Result<DriverHandle>(PciDevice& device)>;

// The registry's driver for the device, with the options the environment
// gives (driver_options.h).
inline Result<DriverHandle> probe_driver_from_environment(PciDevice& device) {
  return probe_driver(device, driver_options_from_environment(device));
}

class vfio_pci_driver_test : public testing::TestWithParam<IommuMode> {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(GetParam()));
    iommu_ = iommu;
    VFIOLAB_ASSIGN_OR_SKIP(device, PciDevice::open(harness::device_bdf(), iommu_));
    device_ = std::move(device);
    start_driver(probe_driver_from_environment);
  }

  // With iommu_ and device_ open: the driver `make` gives for device_, its
  // region and the buffers mapped in iommu_, the driver initialised.
  void start_driver(const DriverFactory& make) {
    VFIOLAB_ASSIGN_OR_SKIP(driver, make(*device_));
    driver_ = std::move(driver);
    allocator_.emplace(check(iommu_->iova_allocator(driver_->iova_limit())));
    region_ = map_new(driver_->region_size());
    src_ = map_new(kBufferSize);
    dst_ = map_new(kBufferSize);
    VFIOLAB_ASSERT_OK(driver_->init(region_->region));
    size_ = std::min<std::uint64_t>(driver_->max_memcpy_size(), kBufferSize);
    rng_.seed(std::random_device{}());
  }

  void TearDown() override {
    if (driver_) VFIOLAB_EXPECT_OK(driver_->remove());
  }

  // A buffer mapped at a fresh IOVA the device can reach (always one: the
  // test fails otherwise).
  std::optional<MappedBuffer> map_new(std::uint64_t size) {
    return check(iommu_->map_new(*allocator_, Backing::anonymous, size));
  }

  // An IOVA nothing is mapped at.
  std::uint64_t unmapped_iova() { return check(allocator_->allocate(kBufferSize)); }

  // Eight bytes a draw: large buffers fill in reasonable time under TCG.
  void fill_random(std::span<std::byte> bytes) {
    std::size_t at = 0;
    for (; at + sizeof(std::uint64_t) <= bytes.size(); at += sizeof(std::uint64_t)) {
      const std::uint64_t word = rng_();
      std::memcpy(bytes.data() + at, &word, sizeof(word));
    }
    for (; at < bytes.size(); ++at) bytes[at] = static_cast<std::byte>(rng_());
  }

  // Every enabled vector's eventfd, emptied.
  void drain_interrupts() {
    for (std::uint32_t v = 0; v < device_->enabled_irq_count(); ++v) (void)device_->irq_eventfd(v).read();
  }
  void expect_no_interrupt(std::string_view after) {
    for (std::uint32_t v = 0; v < device_->enabled_irq_count(); ++v) {
      const auto count = check(device_->irq_eventfd(v).read());
      EXPECT_FALSE(count.has_value()) << "vector " << v << " fired " << count.value_or(0) << " time(s) after "
                                      << after;
    }
  }
  void expect_msi() {
    const auto count = check(device_->irq_eventfd(*driver_->msi_vector()).wait(kMsiTimeout));
    EXPECT_TRUE(count.has_value()) << "no MSI on vector " << *driver_->msi_vector() << " within "
                                    << std::chrono::duration_cast<std::chrono::milliseconds>(kMsiTimeout).count()
                                    << " ms";
  }

  // Before a DMA the IOMMU must block (see FaultWitness).
  FaultWitness fault_witness() const { return FaultWitness::before(device_->bdf()); }

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

  // After a copy warmed the source's translation: the source unmapped and
  // filled anew, the destination filled with kPattern, and a copy from the
  // source once more, which the IOMMU must block. None of the source's data
  // may arrive whatever the copy returned, a copy that reported its failure
  // must change nothing, no interrupt may fire (`what` names the copy), and
  // the fault must be caught (without `record`, by the IOMMU's fault
  // interrupt alone where it has one, and nothing more where it has none:
  // for tests that block many copies, each record waiting out the kernel's
  // rate limit). The source stays unmapped.
  void expect_read_from_unmapped_source_blocked(std::string_view what, bool record = true) {
    ASSERT_EQ(check(iommu_->unmap(src_->region)), src_->region.size);
    fill_random(src_->bytes());
    std::memset(dst_->memory.bytes(), static_cast<int>(kPattern), size_);
    drain_interrupts();

    auto witness = fault_witness();
    auto copied = driver_->memcpy(src_->region.iova, dst_->region.iova, size_);
    const auto src = src_->bytes().first(size_);
    const auto dst = dst_->bytes().first(size_);
    for (std::size_t at = 0; at < size_; at += 64) {
      ASSERT_NE(std::memcmp(dst.data() + at, src.data() + at, std::min<std::size_t>(64, size_ - at)), 0)
          << "data from the unmapped source reached the destination at offset " << at;
    }
    if (!copied) {
      EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](std::byte b) { return b == kPattern; }))
          << "the destination changed although the copy failed";
    }
    ASSERT_TRUE(blocked_copy_ran(copied));
    expect_no_interrupt(what);
    if (record) {
      witness.expect_caught(src_->region.iova, size_, [&] { return faulting_copy_again(); });
    } else {
      witness.expect_interrupt();
    }
  }

  void copy_and_verify(std::uint64_t size) {
    fill_random(src_->bytes().first(size));
    std::memset(dst_->memory.bytes(), 0, size);
    check(driver_->memcpy(src_->region.iova, dst_->region.iova, size));
    ASSERT_EQ(std::memcmp(src_->memory.bytes(), dst_->memory.bytes(), size), 0)
        << "the destination differs from the source after a copy of " << size << " bytes";
  }

  std::optional<MappedBuffer> src_;  // buffers outlive the mappings of them
  std::optional<MappedBuffer> dst_;
  std::optional<MappedBuffer> region_;
  std::shared_ptr<Iommu> iommu_;
  std::unique_ptr<PciDevice> device_;
  DriverHandle driver_;
  std::optional<IovaAllocator> allocator_;
  std::uint64_t size_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace vfiolab
