#include "igb/loopback_driver.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

namespace vfiolab::igb {
namespace {

constexpr std::uint32_t kMsiVector = 0;

// QEMU decides whether the ring has room for a frame by its whole length,
// header included, against the packet buffers alone (igb_has_rxbufs): a
// packet buffer as large as the piece would leave the last frame of a start
// without room. So each is a unit larger; the device writes only the piece.
constexpr std::uint32_t kPacketBuffer = kFramePayload + kSrrctlPacketBufferUnit;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMaxTxPerFrame = 1 + kFramePayload / kPage + 1;  // header, pieces split at pages
// IEEE 802 Local Experimental Ethertype 1: no protocol QEMU parses.
constexpr std::uint16_t kEthertype = 0x88b5;

// Rings and limits.
constexpr std::uint32_t kRxEntries = 4096;
constexpr std::uint32_t kTxEntries = 16384;
constexpr std::uint64_t kFramesPerCopy = 32;
constexpr std::uint64_t kMaxCopy = kFramesPerCopy * kFramePayload;
constexpr std::uint64_t kMaxCount = (kRxEntries - 1) / kFramesPerCopy;
static_assert(kMaxCount * kFramesPerCopy * kMaxTxPerFrame <= kTxEntries - 1);

// The region: the rings, then a page of small buffers (none at offset 0: a
// receive buffer at address 0 is skipped, and the region may sit at IOVA 0).
constexpr std::uint64_t kRxRingOffset = 0;
constexpr std::uint64_t kTxRingOffset = kRxRingOffset + kRxEntries * sizeof(RxDescriptor);
constexpr std::uint64_t kScratchOffset = kTxRingOffset + kTxEntries * sizeof(TxDescriptor);
constexpr std::uint64_t kTxHeaderOffset = kScratchOffset + 0x040;
constexpr std::uint64_t kRxHeaderOffset = kScratchOffset + 0x080;
constexpr std::uint64_t kProbeSourceOffset = kScratchOffset + 0x100;
constexpr std::uint64_t kProbeDestinationOffset = kScratchOffset + 0x200;
constexpr std::uint64_t kProbeSize = 32;
constexpr std::uint64_t kProbeGuard = 256;  // watched after the probe's destination
constexpr std::uint64_t kRegionSize = kScratchOffset + kPage;
static_assert(kProbeDestinationOffset + kProbeSize + kProbeGuard <= kRegionSize);

// QEMU completes auto-negotiation 500 ms (virtual time) after it restarts.
constexpr auto kLinkTimeout = std::chrono::seconds(5);
constexpr auto kProbeTimeout = std::chrono::seconds(2);
// How long frames may still arrive after the last transmit descriptor is
// done; QEMU receives a looped-back frame before it completes the transmit.
constexpr auto kLossGrace = std::chrono::milliseconds(100);

std::uint64_t frames_for(std::uint64_t size) { return (size + kFramePayload - 1) / kFramePayload; }

}  // namespace

std::uint64_t LoopbackDriver::region_size() const { return kRegionSize; }

Result<void> LoopbackDriver::check_region() const {
  if (!bar0_) return std::unexpected(driver_error(ENODEV, "igb init", "BAR0 is not mapped"));
  if (region().iova % 128) {
    return std::unexpected(driver_error(EINVAL, "igb init", "the region's IOVA is not 128-byte aligned"));
  }
  return {};
}

Result<void> LoopbackDriver::start_rings() {
  reset_rings();
  std::memset(region_at(0), 0, kRegionSize);
  return device().enable_irqs(IrqIndex::msix, 1);
}

void LoopbackDriver::set_up_interrupts(unsigned ivars) {
  write32(eitr(kMsiVector), 0);
  for (unsigned n = 0; n < ivars; ++n) write32(ivar(n), 0);
  write32(kIvarMisc, 0);
  (void)read32(kEicr);  // read to clear
  write32(kEiac, 1u << kMsiVector);
  write32(kEims, 1u << kMsiVector);
}

Result<void> LoopbackDriver::finish_init(const Mac& mac) {
  write_header(mac);
  VFIOLAB_TRY(wait_for_link());
  VFIOLAB_TRY(self_test());
  set_limits(kMaxCopy, kMaxCount, kMsiVector);
  return {};
}

Result<void> LoopbackDriver::do_memcpy_start(std::uint64_t src, std::uint64_t dst, std::uint64_t size,
                             std::uint64_t count) {
  if (dst == 0) {
    return std::unexpected(driver_error(
        EINVAL, "memcpy_start",
        fmt::format("src {:#x} dst 0 size {:#x}: the 82576 skips a receive buffer at address 0", src, size)));
  }
  copy_size_ = size;
  frames_per_copy_ = frames_for(size);
  frames_total_ = frames_per_copy_ * count;
  frames_done_ = 0;
  failure_.reset();
  tx_done_at_.reset();

  // Receive buffers first: a frame that finds none is dropped.
  auto* rx = region_at<RxDescriptor>(kRxRingOffset);
  for (std::uint64_t c = 0; c < count; ++c) {
    for (std::uint64_t k = 0; k < frames_per_copy_; ++k) {
      rx[rx_tail_] = {dst + k * kFramePayload, region_iova(kRxHeaderOffset)};
      rx_tail_ = (rx_tail_ + 1) % kRxEntries;
    }
  }
  std::atomic_thread_fence(std::memory_order_release);  // the descriptors before the tail
  write32(queue_.rdt(), rx_tail_);

  auto* tx = region_at<TxDescriptor>(kTxRingOffset);
  auto put = [&](const TxDescriptor& descriptor) {
    tx_last_ = tx_tail_;
    tx[tx_tail_] = descriptor;
    tx_tail_ = (tx_tail_ + 1) % kTxEntries;
  };
  for (std::uint64_t c = 0; c < count; ++c) {
    for (std::uint64_t k = 0; k < frames_per_copy_; ++k) {
      const auto length = static_cast<std::uint32_t>(frame_payload(k));
      put(tx_data(region_iova(kTxHeaderOffset), kHeaderSize, kHeaderSize + length, false, false));
      std::uint64_t address = src + k * kFramePayload;
      for (std::uint32_t left = length; left > 0;) {
        const auto piece = static_cast<std::uint32_t>(std::min<std::uint64_t>(left, kPage - address % kPage));
        left -= piece;
        const bool last_of_frame = left == 0;
        // Only the start's last descriptor reports its completion: the
        // device processes the ring in order.
        const bool last_of_start = last_of_frame && c + 1 == count && k + 1 == frames_per_copy_;
        put(tx_data(address, piece, 0, last_of_frame, last_of_start));
        address += piece;
      }
    }
  }
  std::atomic_thread_fence(std::memory_order_release);
  write32(queue_.tdt(), tx_tail_);
  return {};
}

Result<void> LoopbackDriver::do_memcpy_wait(Clock::time_point deadline) {
  for (;;) {
    reap();
    const bool sent = tx_done();
    if (sent && frames_done_ == frames_total_) {
      if (failure_) return std::unexpected(driver_error(EIO, "memcpy_wait", *failure_));
      return {};
    }
    const auto now = Clock::now();
    if (sent) {
      if (!tx_done_at_) tx_done_at_ = now;
      if (now - *tx_done_at_ >= kLossGrace) return lost_frames();
    }
    if (now >= deadline) {
      return std::unexpected(driver_error(
          ETIMEDOUT, "memcpy_wait",
          fmt::format("{} of {} frames received, transmit {}", frames_done_, frames_total_,
                      sent ? "done" : "not done")));
    }
    std::this_thread::yield();
  }
}

Result<void> LoopbackDriver::do_send_msi() {
  write32(kEics, 1u << kMsiVector);
  return {};
}

void LoopbackDriver::reset_rings() {
  rx_tail_ = rx_clean_ = 0;
  tx_tail_ = tx_last_ = 0;
  frames_total_ = frames_done_ = 0;
}

Result<void> LoopbackDriver::wait_for_link() {
  return poll(device(), "link up (STATUS.LU)", kLinkTimeout,
              [&] { return (read32(kStatus) & kStatusLinkUp) != 0; });
}

Result<void> LoopbackDriver::set_up_queues() {
  write32(queue_.rxdctl(), read32(queue_.rxdctl()) & ~kQueueEnable);
  write32(queue_.txdctl(), read32(queue_.txdctl()) & ~kQueueEnable);
  const std::uint64_t rx_ring = region_iova(kRxRingOffset);
  const std::uint64_t tx_ring = region_iova(kTxRingOffset);
  write32(queue_.rdbal(), static_cast<std::uint32_t>(rx_ring));
  write32(queue_.rdbah(), static_cast<std::uint32_t>(rx_ring >> 32));
  write32(queue_.rdlen(), kRxEntries * sizeof(RxDescriptor));
  write32(queue_.srrctl(), srrctl_value(kPacketBuffer, kHeaderSize));
  write32(queue_.rdh(), 0);
  write32(queue_.rdt(), 0);
  write32(queue_.tdbal(), static_cast<std::uint32_t>(tx_ring));
  write32(queue_.tdbah(), static_cast<std::uint32_t>(tx_ring >> 32));
  write32(queue_.tdlen(), kTxEntries * sizeof(TxDescriptor));
  write32(queue_.tdh(), 0);
  write32(queue_.tdt(), 0);
  write32(queue_.rxdctl(), read32(queue_.rxdctl()) | kQueueEnable);
  write32(queue_.txdctl(), read32(queue_.txdctl()) | kQueueEnable);
  for (std::uint32_t reg : {queue_.rxdctl(), queue_.txdctl()}) {
    VFIOLAB_TRY(poll(device(), "queue enable", kQueueTimeout, [&] { return (read32(reg) & kQueueEnable) != 0; }));
  }
  return {};
}

void LoopbackDriver::write_header(const Mac& mac) {
  std::byte* header = region_at(kTxHeaderOffset);
  std::memset(header, 0, kHeaderSize);
  std::memcpy(header, mac.data(), mac.size());
  std::memcpy(header + 6, mac.data(), mac.size());
  header[12] = static_cast<std::byte>(kEthertype >> 8);
  header[13] = static_cast<std::byte>(kEthertype & 0xff);
}

Result<void> LoopbackDriver::self_test() {
  std::byte* source = region_at(kProbeSourceOffset);
  std::byte* destination = region_at(kProbeDestinationOffset);
  for (std::uint64_t i = 0; i < kProbeSize; ++i) source[i] = static_cast<std::byte>(0xa5 ^ (i * 7));
  std::memset(destination, 0xee, kProbeSize + kProbeGuard);
  constexpr std::string_view kSplitHint =
      "does the receiver split headers (SRRCTL.DESCTYPE 101b)? QEMU 10's igb does";
  auto fail = [&](int errnum, const std::string& why) {
    Error error = driver_error(errnum, "igb loopback self-test", why);
    error.unsupported = errnum == ENODEV;
    return std::unexpected(std::move(error));
  };
  VFIOLAB_TRY(do_memcpy_start(region_iova(kProbeSourceOffset), region_iova(kProbeDestinationOffset), kProbeSize, 1));
  if (auto r = do_memcpy_wait(Clock::now() + kProbeTimeout); !r) {
    // A frame that arrived in the wrong shape is the model's limit (a
    // SKIP); one that never arrived, or never left, is a failure.
    const bool misshapen = r.error().errnum == EIO && failure_;
    return fail(misshapen ? ENODEV : r.error().errnum,
                fmt::format("a {}-byte frame did not loop back as sent: {}{}{}", kHeaderSize + kProbeSize,
                            r.error().message(), misshapen ? "; " : "", misshapen ? kSplitHint : ""));
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  std::vector<std::string_view> wrong;
  if (std::memcmp(source, destination, kProbeSize) != 0) wrong.push_back("the data differs from what was sent");
  if (!std::all_of(destination + kProbeSize, destination + kProbeSize + kProbeGuard,
                   [](std::byte b) { return b == std::byte{0xee}; })) {
    wrong.push_back("bytes after the data were written");
  }
  if (std::memcmp(region_at(kTxHeaderOffset), region_at(kRxHeaderOffset), kHeaderSize) != 0) {
    wrong.push_back("the header buffer does not hold the header sent");
  }
  if (!wrong.empty()) {
    return fail(ENODEV, fmt::format("the frame looped back, but {}; {}", fmt::join(wrong, "; "), kSplitHint));
  }
  return {};
}

std::uint64_t LoopbackDriver::frame_payload(std::uint64_t frame) const {
  return std::min(kFramePayload, copy_size_ - frame * kFramePayload);
}

void LoopbackDriver::reap() {
  auto* rx = reinterpret_cast<volatile std::uint32_t*>(region_at(kRxRingOffset));
  while (frames_done_ < frames_total_) {
    volatile std::uint32_t* written = rx + rx_clean_ * (sizeof(RxDescriptor) / 4);
    const std::uint32_t status = written[kRxWbStatusWord];
    if (!(status & kRxdStatusDone)) return;
    std::atomic_thread_fence(std::memory_order_acquire);  // the data before its descriptor
    const std::uint32_t length = written[kRxWbLengthWord] & 0xffff;
    const std::uint64_t expected = frame_payload(frames_done_ % frames_per_copy_);
    const bool bad = !(status & kRxdStatusEndOfPacket) || (status & (kRxdFrameErrors | kRxdHeaderBufferOverflow)) ||
                     length != expected;
    if (bad && !failure_) {
      failure_ = fmt::format("frame {} of {} (receive descriptor {}): status {:#x}, {} bytes in the packet buffer, "
                             "{} expected",
                             frames_done_, frames_total_, rx_clean_, status, length, expected);
    }
    rx_clean_ = (rx_clean_ + 1) % kRxEntries;
    ++frames_done_;
  }
}

bool LoopbackDriver::tx_done() const {
  auto* tx = reinterpret_cast<const volatile std::uint32_t*>(region_at(kTxRingOffset));
  return (tx[tx_last_ * (sizeof(TxDescriptor) / 4) + kTxWbStatusWord] & kTxdStatusDone) != 0;
}

Result<void> LoopbackDriver::lost_frames() {
  const std::uint64_t received = frames_done_;
  const std::uint64_t sent = frames_total_;
  frames_total_ = frames_done_ = 0;
  auto restarted = restart_receive_queue();
  std::string detail = fmt::format("all {} frames were sent, {} arrived: the device dropped {} (it does when the "
                                   "read of a frame's source fails)",
                                   sent, received, sent - received);
  if (failure_) detail += "; before that, " + *failure_;
  if (!restarted) detail += "; restarting the receive queue failed: " + restarted.error().message();
  return std::unexpected(driver_error(EIO, "memcpy_wait", detail));
}

Result<void> LoopbackDriver::restart_receive_queue() {
  write32(queue_.rxdctl(), read32(queue_.rxdctl()) & ~kQueueEnable);
  VFIOLAB_TRY(poll(device(), "receive queue disable", kQueueTimeout,
                   [&] { return !(read32(queue_.rxdctl()) & kQueueEnable); }));
  write32(queue_.rdh(), 0);
  write32(queue_.rdt(), 0);
  rx_tail_ = rx_clean_ = 0;
  write32(queue_.rxdctl(), read32(queue_.rxdctl()) | kQueueEnable);
  return poll(device(), "receive queue enable", kQueueTimeout,
              [&] { return (read32(queue_.rxdctl()) & kQueueEnable) != 0; });
}

}  // namespace vfiolab::igb
