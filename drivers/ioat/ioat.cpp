#include "ioat/ioat.h"

#include "ioat/registers.h"
#include "vfiolab/mmio.h"

#include <fmt/format.h>
#include <linux/pci_regs.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace vfiolab::ioat {

namespace {

using Clock = std::chrono::steady_clock;

// How long the kernel gives a channel to suspend and to reset
// (ioat_reset_hw: 100 ms and 200 ms); the start-up NULL descriptor and an
// MSI's NULL descriptor get the longer of the two.
constexpr auto kSuspendTimeout = std::chrono::milliseconds(100);
constexpr auto kResetTimeout = std::chrono::milliseconds(200);

bool running(ioat::ChannelState state) {
  return state == ioat::ChannelState::active || state == ioat::ChannelState::done;
}

std::string describe_chanerr(std::uint32_t chanerr) {
  std::string names;
  for (const auto& bit : ioat::kChanErrBits) {
    if (chanerr & bit.bit) names += fmt::format("{}{}", names.empty() ? "" : ", ", bit.name);
  }
  return fmt::format("CHANERR {:#x}{}", chanerr, names.empty() ? "" : " (" + names + ")");
}

class IoatDriver final : public Driver {
 public:
  explicit IoatDriver(PciDevice& device) : Driver(device) {}

  std::string_view name() const override { return kName; }
  std::uint64_t region_size() const override { return kRegionBytes; }
  // CHANERR and a halted channel report a failed read or write.
  bool reports_dma_errors() const override { return true; }

  // The region: the completion writeback word, then the descriptor ring.
  // The ring's size divides 2^16, so DMACOUNT (16 bits) wraps with it.
  static constexpr std::uint64_t kCompletionOffset = 0;
  static constexpr std::uint64_t kRingOffset = 0x1000;
  static constexpr std::uint32_t kRingEntries = 4096;
  static constexpr std::uint64_t kRegionBytes = kRingOffset + kRingEntries * ioat::kDescriptorSize;
  static_assert(65536 % kRingEntries == 0);

 protected:
  Result<void> do_init() override;
  void do_remove() override;
  Result<void> do_memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                               std::uint64_t count) override;
  Result<void> do_memcpy_wait(std::chrono::steady_clock::time_point deadline) override;
  Result<void> do_send_msi() override;

 private:
  template <typename T>
  T read(std::uint32_t offset) const {
    return Mmio(mmio_).read<T>(offset);
  }
  template <typename T>
  void write(std::uint32_t offset, T value) const {
    Mmio(mmio_).write<T>(offset, value);
  }
  // Channel 0's registers.
  template <typename T>
  T read_chan(std::uint32_t reg) const { return read<T>(ioat::channel_base(0) + reg); }
  template <typename T>
  void write_chan(std::uint32_t reg, T value) const { write<T>(ioat::channel_base(0) + reg, value); }

  ioat::DmaDescriptor* slot(std::uint32_t position) const;
  std::uint64_t slot_iova(std::uint32_t position) const;
  volatile std::uint64_t* completion() const { return region_at<volatile std::uint64_t>(kCompletionOffset); }

  Result<void> reset_channel();
  void program_chain();
  Result<void> restart_if_needed();
  void submit(std::uint32_t descriptors);
  Result<void> wait_for(std::uint64_t descriptor_iova, std::chrono::steady_clock::time_point deadline,
                        const std::string& operation);
  Error channel_error(int errnum, std::string operation, std::string detail) const;

  std::byte* mmio_ = nullptr;        // set once the device is known to be a usable 3.x CBDMA
  std::uint8_t version_ = 0;
  std::uint32_t head_ = 0;           // ring position of the next descriptor to fill
  std::uint16_t dmacount_ = 0;       // last value written to DMACOUNT
  std::uint64_t awaited_ = 0;        // descriptor whose completion ends the copy in flight
  bool copy_pending_ = false;
  bool restart_needed_ = false;      // the channel halted: reset it before the next use
};

}  // namespace

ioat::DmaDescriptor* IoatDriver::slot(std::uint32_t position) const {
  return region_at<ioat::DmaDescriptor>(kRingOffset + (position % kRingEntries) * ioat::kDescriptorSize);
}

std::uint64_t IoatDriver::slot_iova(std::uint32_t position) const {
  return region_iova(kRingOffset + (position % kRingEntries) * ioat::kDescriptorSize);
}

Error IoatDriver::channel_error(int errnum, std::string operation, std::string detail) const {
  const std::uint64_t sts = read_chan<std::uint64_t>(ioat::kChanStsReg);
  const auto status = ioat::decode_chansts(sts);
  return driver_error(errnum, std::move(operation),
                      fmt::format("{}: CHANSTS {:#x} ({}), {}", detail, sts, ioat::channel_state_name(status.state),
                                  describe_chanerr(read_chan<std::uint32_t>(ioat::kChanErrReg))));
}

// ioat_reset_hw: suspend a running channel, clear its errors, reset it.
Result<void> IoatDriver::reset_channel() {
  const auto suspend_deadline = Clock::now() + kSuspendTimeout;
  if (running(ioat::decode_chansts(read_chan<std::uint64_t>(ioat::kChanStsReg)).state)) {
    write_chan<std::uint8_t>(ioat::kChanCmdReg, ioat::kChanCmdSuspend);
    while (running(ioat::decode_chansts(read_chan<std::uint64_t>(ioat::kChanStsReg)).state)) {
      if (Clock::now() > suspend_deadline) {
        return std::unexpected(channel_error(ETIMEDOUT, "ioat reset", "the channel did not suspend"));
      }
      std::this_thread::yield();
    }
  }
  write_chan<std::uint32_t>(ioat::kChanErrReg, read_chan<std::uint32_t>(ioat::kChanErrReg));
  if (version_ < ioat::kVersion3_3) {
    // Before 3.3 the error is latched in config space too. Best effort:
    // a refused config write leaves a stale bit there, not a broken channel.
    std::uint32_t latched = 0;
    if (device().config_read(ioat::kPciChanErrIntCfg, &latched, sizeof latched) && latched != 0) {
      (void)device().config_write(ioat::kPciChanErrIntCfg, &latched, sizeof latched);
    }
  }
  write_chan<std::uint8_t>(ioat::kChanCmdReg, ioat::kChanCmdReset);
  const auto reset_deadline = Clock::now() + kResetTimeout;
  while (read_chan<std::uint8_t>(ioat::kChanCmdReg) & ioat::kChanCmdReset) {
    if (Clock::now() > reset_deadline) {
      return std::unexpected(channel_error(ETIMEDOUT, "ioat reset", "CHANCMD.reset did not clear"));
    }
    std::this_thread::yield();
  }
  dmacount_ = 0;
  copy_pending_ = false;
  restart_needed_ = false;
  return {};
}

// After a reset: run the channel, point it at the completion word and at
// the next free descriptor. The kernel writes the 64-bit CHANCMP and
// CHAINADDR as two 32-bit halves ("1 64b write doesn't work").
void IoatDriver::program_chain() {
  write_chan<std::uint16_t>(ioat::kChanCtrlReg, ioat::kChanCtrlRun);
  const std::uint64_t completion_iova = region_iova(kCompletionOffset);
  write_chan<std::uint32_t>(ioat::kChanCmpLowReg, static_cast<std::uint32_t>(completion_iova));
  write_chan<std::uint32_t>(ioat::kChanCmpHighReg, static_cast<std::uint32_t>(completion_iova >> 32));
  const std::uint64_t chain = slot_iova(head_);
  write_chan<std::uint32_t>(ioat::kChainAddrLowReg, static_cast<std::uint32_t>(chain));
  write_chan<std::uint32_t>(ioat::kChainAddrHighReg, static_cast<std::uint32_t>(chain >> 32));
}

Result<void> IoatDriver::restart_if_needed() {
  if (!restart_needed_) return {};
  VFIOLAB_TRY(reset_channel());
  program_chain();
  return {};
}

// Hands the descriptors filled since the last call to the channel: DMACOUNT
// is the running count of descriptors given, modulo 2^16.
void IoatDriver::submit(std::uint32_t descriptors) {
  *completion() = 0;
  head_ += descriptors;
  dmacount_ = static_cast<std::uint16_t>(dmacount_ + descriptors);
  std::atomic_thread_fence(std::memory_order_seq_cst);  // descriptors before the doorbell
  write_chan<std::uint16_t>(ioat::kDmaCountReg, dmacount_);
}

// Done when the completion writeback names the descriptor; an error when
// the channel halts (the writeback or CHANSTS says so) or CHANERR is set.
Result<void> IoatDriver::wait_for(std::uint64_t descriptor_iova, Clock::time_point deadline,
                                  const std::string& operation) {
  for (;;) {
    const bool late = Clock::now() > deadline;
    const auto written = ioat::decode_chansts(*completion());
    const auto live = ioat::decode_chansts(read_chan<std::uint64_t>(ioat::kChanStsReg));
    const std::uint32_t chanerr = read_chan<std::uint32_t>(ioat::kChanErrReg);
    if (written.state == ioat::ChannelState::halted || live.state == ioat::ChannelState::halted || chanerr != 0) {
      restart_needed_ = true;
      return std::unexpected(channel_error(EIO, operation, "the channel reported an error"));
    }
    if (written.completed_descriptor == descriptor_iova) {
      std::atomic_thread_fence(std::memory_order_acquire);
      return {};
    }
    if (late) {
      return std::unexpected(channel_error(
          ETIMEDOUT, operation,
          fmt::format("descriptor {:#x} not complete; writeback names {:#x}", descriptor_iova,
                      written.completed_descriptor)));
    }
    std::this_thread::yield();
  }
}

Result<void> IoatDriver::do_init() {
  auto* bar0 = static_cast<std::byte*>(device().bar(0).address());
  if (bar0 == nullptr || device().bar(0).info.size < ioat::channel_base(1)) {
    Error error = driver_error(ENODEV, "ioat init", "BAR0 is not mmap-able or too small for channel 0");
    error.unsupported = true;
    return std::unexpected(std::move(error));
  }
  mmio_ = bar0;
  version_ = read<std::uint8_t>(ioat::kVersionReg);
  const unsigned channels = read<std::uint8_t>(ioat::kChanCntReg) & ioat::kCountFieldMask;
  const std::uint64_t max_size = ioat::xfercap_bytes(read<std::uint8_t>(ioat::kXferCapReg));
  if (version_ < ioat::kVersion3_0 || channels == 0 || max_size == 0) {
    Error error = driver_error(
        ENODEV, "ioat init",
        fmt::format("CBDMA version {}.{} with {} channels and XFERCAP {:#x}; the driver needs 3.0 or later, a channel "
                    "and XFERCAP 12..31",
                    ioat::version_major(version_), ioat::version_minor(version_), channels,
                    read<std::uint8_t>(ioat::kXferCapReg)));
    error.unsupported = true;
    mmio_ = nullptr;
    return std::unexpected(std::move(error));
  }
  if (region().iova % ioat::kDescriptorAlign != 0) {
    return std::unexpected(driver_error(EINVAL, "ioat init",
                                        fmt::format("region IOVA {:#x} is not 64-byte aligned", region().iova)));
  }

  // The kernel clears relaxed ordering so that the completion writeback
  // cannot pass the data it reports (ioat3_dma_probe).
  VFIOLAB_ASSIGN_OR_RETURN(const auto exp, device().find_capability(PCI_CAP_ID_EXP));
  if (exp) {
    const std::uint32_t at = *exp + PCI_EXP_DEVCTL;
    VFIOLAB_ASSIGN_OR_RETURN(const auto devctl, device().config_read<std::uint16_t>(at));
    if (devctl & PCI_EXP_DEVCTL_RELAX_EN) {
      VFIOLAB_TRY(device().config_write(at, static_cast<std::uint16_t>(devctl & ~PCI_EXP_DEVCTL_RELAX_EN)));
    }
  }

  VFIOLAB_TRY(reset_channel());
  head_ = 0;
  for (std::uint32_t i = 0; i < kRingEntries; ++i) {
    *slot(i) = ioat::DmaDescriptor{};
    slot(i)->next = slot_iova(i + 1);  // the last links back to the first
  }
  program_chain();

  VFIOLAB_TRY(device().enable_irqs(IrqIndex::msix, 1));
  write<std::uint8_t>(ioat::kIntrCtrlReg, ioat::kIntrCtrlMasterIntEn | ioat::kIntrCtrlMsixVectorControl);

  // Start the channel with a NULL descriptor, as the kernel does, and check
  // that it completes (no interrupt: tests count MSIs).
  *slot(head_) = ioat::encode_null(slot_iova(head_ + 1), false, true);
  const std::uint64_t first = slot_iova(head_);
  submit(1);
  VFIOLAB_TRY(wait_for(first, Clock::now() + kResetTimeout, "ioat init"));

  // At most kRingEntries - 1 descriptors are in flight, so the one awaited
  // has an address of its own on the ring.
  set_limits(max_size, kRingEntries - 1, 0);
  return {};
}

void IoatDriver::do_remove() {
  if (mmio_ != nullptr) {
    (void)reset_channel();  // quiesces the channel; nothing to report to
    write<std::uint8_t>(ioat::kIntrCtrlReg, 0);
  }
  if (device().enabled_irq_index() == IrqIndex::msix) (void)device().disable_irqs(IrqIndex::msix);
  mmio_ = nullptr;
  head_ = 0;
  dmacount_ = 0;
  copy_pending_ = restart_needed_ = false;
}

Result<void> IoatDriver::do_memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                                         std::uint64_t count) {
  VFIOLAB_TRY(restart_if_needed());
  // Driver::memcpy_start has checked size <= XFERCAP and count < kRingEntries.
  const auto n = static_cast<std::uint32_t>(count);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint32_t position = head_ + i;
    *slot(position) = ioat::encode_memcpy(src_iova, dst_iova, static_cast<std::uint32_t>(size),
                                          slot_iova(position + 1), false, i + 1 == n);
  }
  awaited_ = slot_iova(head_ + n - 1);
  submit(n);
  copy_pending_ = true;
  return {};
}

Result<void> IoatDriver::do_memcpy_wait(Clock::time_point deadline) {
  auto result = wait_for(awaited_, deadline, "memcpy_wait");
  if (result || result.error().errnum != ETIMEDOUT) copy_pending_ = false;
  return result;
}

Result<void> IoatDriver::do_send_msi() {
  if (copy_pending_) {
    return std::unexpected(driver_error(EBUSY, "send_msi", "a copy is in flight; wait for it first"));
  }
  VFIOLAB_TRY(restart_if_needed());
  // Re-arm the channel's interrupt (the kernel does so after each one).
  write_chan<std::uint16_t>(ioat::kChanCtrlReg, ioat::kChanCtrlRun);
  *slot(head_) = ioat::encode_null(slot_iova(head_ + 1), true, true);
  const std::uint64_t descriptor = slot_iova(head_);
  submit(1);
  return wait_for(descriptor, Clock::now() + kResetTimeout, "send_msi");
}

bool probe(const PciDevice& device) { return ioat_matches(device.vendor_id(), device.device_id()); }

DriverHandle create(PciDevice& device, const DriverOptions&) { return make_driver<IoatDriver>(device); }

}  // namespace vfiolab::ioat
