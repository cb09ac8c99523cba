// The DSA driver. Bring-up follows the DSA specification's order, which the
// Linux idxd driver also uses: reset, write the group and WQ tables while
// the device is disabled, enable the device, then the WQ. Commands are
// polled through CMDSTS (no completion interrupt), so vector 0 only carries
// the device's error and halt interrupts; vector 1 is the completion vector.
#include "dsa/dsa.h"

#include "dsa/registers.h"
#include "vfiolab/mmio.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

namespace vfiolab::dsa {
namespace {

constexpr unsigned kWq = 0;               // the one WQ, in group 0 with engine 0
constexpr std::uint32_t kErrorVector = 0;  // misc: errors, halt, command completion
constexpr std::uint32_t kCompletionVector = 1;
constexpr std::uint16_t kWqSize = 16;      // Linux's default WQ depth; we keep one submission in flight
constexpr std::uint8_t kWqPriority = 10;   // Linux's default for its kernel WQ
constexpr auto kCommandTimeout = std::chrono::seconds(1);
constexpr auto kMsiTimeout = std::chrono::seconds(1);

// The region: the copy's completion record, send_msi's, then the batch
// list (64-byte aligned) followed by one completion record per entry.
constexpr std::uint64_t kCopyRecord = 0x0;
constexpr std::uint64_t kMsiRecord = 0x40;
constexpr std::uint64_t kBatchList = 0x1000;
constexpr std::uint64_t kBytesPerBatchEntry = sizeof(HwDescriptor) + sizeof(CompletionRecord);

std::string hex(std::uint64_t value) { return fmt::format("{:#x}", value); }

class DsaDriver final : public Driver {
 public:
  using Driver::Driver;
  std::string_view name() const override { return kName; }
  // The device reports translation failures in the completion record.
  bool reports_dma_errors() const override { return true; }

 protected:
  Result<void> do_init() override;
  void do_remove() override;
  Result<void> do_memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                               std::uint64_t count) override;
  Result<void> do_memcpy_wait(std::chrono::steady_clock::time_point deadline) override;
  Result<void> do_send_msi() override;

 private:
  std::uint32_t read32(std::size_t offset) const;
  std::uint64_t read64(std::size_t offset) const;
  void write32(std::size_t offset, std::uint32_t value) const;
  void write64(std::size_t offset, std::uint64_t value) const;

  // Runs a command and waits for CMDSTS to go idle; an error names the
  // command and CMDSTS's error code.
  Result<CommandStatus> run_command(Command command, std::uint32_t operand, std::string_view what);
  Result<void> submit(const HwDescriptor& descriptor);
  // Waits for the record's status byte; 0 when the deadline passed first.
  static std::uint8_t poll_status(const CompletionRecord* record, std::chrono::steady_clock::time_point deadline);
  Result<void> completion_error(std::string operation, const CompletionRecord& record, std::uint8_t status) const;
  std::string swerr_summary() const;

  std::byte* mmio_ = nullptr;
  std::byte* portal_ = nullptr;
  std::uint64_t list_capacity_ = 0;  // descriptors the batch list holds
  std::uint64_t last_count_ = 0;     // copies in the last submission
  std::uint16_t int_handle_ = 0;     // for vector 1
  bool int_handle_requested_ = false;
  bool wq_enabled_ = false;
};

}  // namespace

bool probe(const PciDevice& device) { return dsa_matches(device.vendor_id(), device.device_id()); }

DriverHandle create(PciDevice& device, const DriverOptions&) { return make_driver<DsaDriver>(device); }

std::uint32_t DsaDriver::read32(std::size_t offset) const {
  return Mmio(mmio_).read32(offset);
}
std::uint64_t DsaDriver::read64(std::size_t offset) const {
  return Mmio(mmio_).read64(offset);
}
void DsaDriver::write32(std::size_t offset, std::uint32_t value) const {
  Mmio(mmio_).write32(offset, value);
}
void DsaDriver::write64(std::size_t offset, std::uint64_t value) const {
  Mmio(mmio_).write64(offset, value);
}

Result<CommandStatus> DsaDriver::run_command(Command command, std::uint32_t operand, std::string_view what) {
  const auto deadline = std::chrono::steady_clock::now() + kCommandTimeout;
  auto wait_idle = [&]() -> std::optional<CommandStatus> {
    for (;;) {
      const CommandStatus status = decode_cmdsts(read32(kRegCmdSts));
      if (!status.active) return status;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::yield();
    }
  };
  const std::string op = fmt::format("DSA command {}", what);
  if (!wait_idle()) return std::unexpected(driver_error(EBUSY, op, "an earlier command is still active"));
  write32(kRegCmd, encode_cmd(command, operand));
  const auto status = wait_idle();
  if (!status) return std::unexpected(driver_error(ETIMEDOUT, op, "CMDSTS still active after 1 s"));
  if (status->error != 0) {
    return std::unexpected(driver_error(EIO, op,
                                        fmt::format("CMDSTS error {:#x} ({}), device {}", status->error,
                                                    cmdsts_error_name(status->error),
                                                    device_state_name(genstats_state(read32(kRegGenStats))))));
  }
  return *status;
}

Result<void> DsaDriver::do_init() {
  mmio_ = static_cast<std::byte*>(device().bar(kMmioBar).address());
  portal_ = static_cast<std::byte*>(device().bar(kPortalBar).address());
  if (!mmio_ || !portal_) {
    mmio_ = nullptr;
    return std::unexpected(unsupported_error(ENODEV, "DSA init",
                                             fmt::format("{}: BAR0 or BAR2 (WQ portals) is not mmap'd", device().name())));
  }
#if !defined(__x86_64__)
  return std::unexpected(unsupported_error(EOPNOTSUPP, "DSA init", "portal submission needs x86-64 MOVDIR64B"));
#endif

  const std::uint64_t gencap = read64(kRegGenCap);
  const std::uint64_t wqcap = read64(kRegWqCap);
  const std::uint64_t grpcap = read64(kRegGrpCap);
  const std::uint64_t engcap = read64(kRegEngCap);
  const std::uint64_t offsets = read64(kRegOffsets);
  std::uint64_t opcap[4];
  for (std::size_t i = 0; i < 4; ++i) opcap[i] = read64(kRegOpCap + 8 * i);
  auto supports = [&](Opcode op) { return (opcap[0] >> static_cast<unsigned>(op)) & 1; };

  std::string missing;
  if (!(gencap & kGenCapConfigEnable)) missing = "a configurable device (GENCAP config enable)";
  else if (wqcap_num_wqs(wqcap) == 0 || wqcap_total_size(wqcap) == 0) missing = "a work queue";
  else if (!(wqcap & kWqCapDedicatedMode)) missing = "dedicated WQ mode";
  else if (grpcap_num_groups(grpcap) == 0 || engcap_num_engines(engcap) == 0) missing = "a group and an engine";
  else if (!supports(Opcode::memmove) || !supports(Opcode::noop)) missing = "MEMMOVE and NOOP in OPCAP";
  if (!missing.empty()) {
    return std::unexpected(unsupported_error(ENODEV, "DSA init", fmt::format("{}: no {}", device().name(), missing)));
  }

  // A reset returns every table to its defaults and leaves the device
  // disabled, whatever the last user left behind.
  VFIOLAB_TRY(run_command(Command::reset_device, 0, "reset device"));
  if (const DeviceState state = genstats_state(read32(kRegGenStats)); state != DeviceState::disabled) {
    return std::unexpected(
        driver_error(EBUSY, "DSA init", fmt::format("device {} after reset", device_state_name(state))));
  }
  write64(kRegSwErr, kSwErrAck);  // so that a later report names only our errors
  write32(kRegGenCtrl, kGenCtrlSoftErrIntEnable | kGenCtrlHaltIntEnable);

  const unsigned xfer_shift = gencap_max_xfer_shift(gencap);
  const bool batch = supports(Opcode::batch) && gencap_max_batch_shift(gencap) > 0;
  const unsigned batch_shift = batch ? gencap_max_batch_shift(gencap) : 0;

  // Group 0: WQ 0 and engine 0; the reset cleared the other groups.
  const auto grpcfg = encode_grpcfg(kWq, 0, grpcap_total_read_buffers(grpcap));
  for (std::size_t i = 0; i < grpcfg.size(); ++i) write64(offsets_grpcfg(offsets) + 8 * i, grpcfg[i]);

  const WqConfig wq{
      .size = static_cast<std::uint16_t>(std::min<unsigned>(kWqSize, wqcap_total_size(wqcap))),
      .threshold = 0,
      .dedicated = true,
      .block_on_fault = false,  // a fault ends the copy with a status, no page request
      .priority = kWqPriority,
      .max_xfer_shift = xfer_shift,
      .max_batch_shift = batch_shift,
  };
  const std::size_t wqcfg = offsets_wqcfg(offsets) + kWq * wqcap_wqcfg_bytes(wqcap);
  const auto words = encode_wqcfg(wq);
  for (std::size_t i = 0; i < words.size(); ++i) write32(wqcfg + 4 * i, words[i]);
  if ((wqcap & kWqCapOpConfig) && wqcap_wqcfg_bytes(wqcap) >= kWqCfgOpConfigOffset + sizeof(opcap)) {
    // Allow every operation the device has.
    for (std::size_t i = 0; i < 4; ++i) write64(wqcfg + kWqCfgOpConfigOffset + 8 * i, opcap[i]);
  }

  // MSI-X, and its permission entries: no PASID, not ignored.
  VFIOLAB_TRY(device().enable_irqs(IrqIndex::msix, 2));
  for (std::uint32_t v : {kErrorVector, kCompletionVector}) {
    write32(offsets_msix_perm(offsets) + kMsixPermEntryBytes * v, 0);
  }

  VFIOLAB_TRY(run_command(Command::enable_device, 0, "enable device"));

  // A device that says so needs an interrupt handle for a vector;
  // otherwise the handle is the MSI-X vector number.
  int_handle_ = kCompletionVector;
  const bool needs_handle =
      (gencap & kGenCapCmdCap) &&
      (read32(kRegCmdCap) >> static_cast<unsigned>(Command::request_int_handle) & 1);
  if (needs_handle) {
    VFIOLAB_ASSIGN_OR_RETURN(const auto status,
                             run_command(Command::request_int_handle, kCompletionVector, "request interrupt handle"));
    int_handle_ = status.result;
    int_handle_requested_ = true;
  }

  VFIOLAB_TRY(run_command(Command::enable_wq, kWq, "enable WQ"));
  wq_enabled_ = true;

  list_capacity_ = (region_size() - kBatchList) / kBytesPerBatchEntry;
  const std::uint64_t max_count = batch ? std::min<std::uint64_t>(1ull << batch_shift, list_capacity_) : 1;
  const std::uint64_t max_size = std::min<std::uint64_t>(1ull << xfer_shift, UINT32_MAX);
  set_limits(max_size, max_count, kCompletionVector);
  return {};
}

void DsaDriver::do_remove() {
  if (mmio_) {
    // Best effort: a failing command leaves the next init()'s reset to
    // clean up.
    if (wq_enabled_) (void)run_command(Command::disable_wq, wq_mask_operand(kWq), "disable WQ");
    if (int_handle_requested_) (void)run_command(Command::release_int_handle, int_handle_, "release interrupt handle");
    const DeviceState state = genstats_state(read32(kRegGenStats));
    if (state == DeviceState::enabled) (void)run_command(Command::disable_device, 0, "disable device");
    if (state == DeviceState::halted) (void)run_command(Command::reset_device, 0, "reset device");
    write32(kRegGenCtrl, 0);
  }
  if (device().enabled_irq_index() == IrqIndex::msix) (void)device().disable_irqs(IrqIndex::msix);
  mmio_ = portal_ = nullptr;
  wq_enabled_ = int_handle_requested_ = false;
}

Result<void> DsaDriver::submit(const HwDescriptor& descriptor) {
#if defined(__x86_64__)
  // Descriptors and cleared completion records in memory before the
  // device can see the submission.
  std::atomic_thread_fence(std::memory_order_release);
  asm volatile("sfence" ::: "memory");
  // One 64-byte non-torn store to the WQ's unlimited MSI-X portal
  // (64-byte aligned: the start of a page of BAR2).
  std::byte* portal = portal_ + kWq * kPortalBytesPerWq;
  asm volatile("movdir64b %[src], %[dst]" : : [dst] "r"(portal), [src] "m"(descriptor) : "memory");
  return {};
#else
  (void)descriptor;
  return std::unexpected(driver_error(EOPNOTSUPP, "DSA submit", "MOVDIR64B needs x86-64"));
#endif
}

Result<void> DsaDriver::do_memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                                        std::uint64_t count) {
  const auto bytes = static_cast<std::uint32_t>(size);  // max_memcpy_size() fits 32 bits
  *region_at<CompletionRecord>(kCopyRecord) = {};
  HwDescriptor descriptor;
  if (count == 1) {
    descriptor = encode_memmove(src_iova, dst_iova, bytes, region_iova(kCopyRecord), false);
  } else {
    // Each entry gets its own completion record, so that a failure lands
    // there (with its fault address) rather than in SWERR.
    const std::uint64_t records = kBatchList + list_capacity_ * sizeof(HwDescriptor);
    auto* list = region_at<HwDescriptor>(kBatchList);
    auto* record = region_at<CompletionRecord>(records);
    for (std::uint64_t i = 0; i < count; ++i) {
      record[i] = {};
      list[i] = encode_memmove(src_iova, dst_iova, bytes, region_iova(records + i * sizeof(CompletionRecord)), false);
    }
    descriptor = encode_batch(region_iova(kBatchList), static_cast<std::uint32_t>(count), region_iova(kCopyRecord));
  }
  last_count_ = count;
  return submit(descriptor);
}

std::uint8_t DsaDriver::poll_status(const CompletionRecord* record, std::chrono::steady_clock::time_point deadline) {
  auto* status = reinterpret_cast<volatile const std::uint8_t*>(&record->status);
  for (;;) {
    if (const std::uint8_t s = *status; s != 0) {
      std::atomic_thread_fence(std::memory_order_acquire);
      return s;
    }
    if (std::chrono::steady_clock::now() >= deadline) return 0;
    std::this_thread::yield();
  }
}

std::string DsaDriver::swerr_summary() const {
  const std::uint64_t swerr = read64(kRegSwErr);
  std::string s = fmt::format("device {}", device_state_name(genstats_state(read32(kRegGenStats))));
  if (swerr_valid(swerr)) {
    s += fmt::format(", SWERR error {:#x} ({}) at {:#x}", swerr_code(swerr), completion_status_name(swerr_code(swerr)),
                     read64(kRegSwErr + 16));
  }
  return s;
}

Result<void> DsaDriver::completion_error(std::string operation, const CompletionRecord& record,
                                         std::uint8_t status) const {
  const CompletionDecode d = decode_completion(status);
  std::string detail = fmt::format("completion status {:#x} ({})", d.code, completion_status_name(d.code));
  if (d.kind == Completion::page_fault) {
    detail += fmt::format(", {} fault at {:#x}", d.fault_on_write ? "write" : "read", record.fault_addr);
  } else if (record.fault_addr != 0) {
    detail += ", fault address " + hex(record.fault_addr);
  }
  detail += fmt::format(", {} bytes completed", record.bytes_completed);
  return std::unexpected(driver_error(EIO, std::move(operation), std::move(detail)));
}

Result<void> DsaDriver::do_memcpy_wait(std::chrono::steady_clock::time_point deadline) {
  const auto* record = region_at<CompletionRecord>(kCopyRecord);
  const std::uint8_t status = poll_status(record, deadline);
  if (status == 0) return std::unexpected(driver_error(ETIMEDOUT, "DSA memcpy_wait", "no completion; " + swerr_summary()));
  if (decode_completion(status).kind == Completion::success) return {};
  if (last_count_ > 1 && (status & kStatusCodeMask) == status::batch_fail) {
    // Name the first entry that failed.
    const auto* entries = region_at<CompletionRecord>(kBatchList + list_capacity_ * sizeof(HwDescriptor));
    for (std::uint64_t i = 0; i < last_count_; ++i) {
      const std::uint8_t s = *reinterpret_cast<volatile const std::uint8_t*>(&entries[i].status);
      if (s != 0 && decode_completion(s).kind != Completion::success) {
        return completion_error(fmt::format("DSA batch entry {} of {}", i, last_count_), entries[i], s);
      }
    }
  }
  return completion_error(last_count_ > 1 ? "DSA batch" : "DSA memmove", *record, status);
}

Result<void> DsaDriver::do_send_msi() {
  auto* record = region_at<CompletionRecord>(kMsiRecord);
  *record = {};
  HwDescriptor descriptor = encode_noop(region_iova(kMsiRecord), true);
  descriptor.int_handle = int_handle_;
  VFIOLAB_TRY(submit(descriptor));
  // The interrupt follows the completion record; a bad handle shows there.
  const std::uint8_t status = poll_status(record, std::chrono::steady_clock::now() + kMsiTimeout);
  if (status == 0) return std::unexpected(driver_error(ETIMEDOUT, "DSA send_msi", "no completion; " + swerr_summary()));
  if (decode_completion(status).kind != Completion::success) return completion_error("DSA send_msi", *record, status);
  return {};
}

}  // namespace vfiolab::dsa
