// One receive and one transmit queue (queue 0), both in the driver's region,
// and the MAC in loopback (RCTL.LBM): what the port transmits, it receives.
//
// A copy is cut into frames of at most kFramePayload bytes. Each frame is a
// 64-byte Ethernet header from the region followed by one piece of the
// source. The receive queue splits every frame at 64 bytes ("header split,
// always use header buffer"): the header goes to a scratch buffer in the
// region, the rest to the piece's place in the destination. So the data
// never has to pass for an Ethernet header, and copies as short as one byte
// at any alignment work: with the header the frame is never shorter than
// Ethernet's 60-byte minimum, which the receiver would pad into the
// destination; the CRC is stripped (RCTL.SECRC), so nothing follows the
// data either. The header's destination is the one address the receive
// filter accepts, so nothing but the driver's own frames reaches the ring
// (QEMU hands the NIC whatever its network backend sends).
//
// Why the limits are what they are:
// - kFramePayload (8 KiB): one receive packet buffer per frame
//   (SRRCTL.BSIZEPACKET counts 1 KiB units; see kPacketBuffer) and a frame
//   of 8256 bytes, in the 82576's jumbo frame limit (about 9.5 KB).
// - Transmit buffers never cross a 4 KiB IOVA page: QEMU maps each transmit
//   buffer in one piece (pci_dma_map) and drops the frame when the IOMMU
//   maps it only in part, which pages of an IOVA range that are not
//   contiguous in guest memory are.
// - A copy is at most kFramesPerCopy frames and a start at most kMaxCount
//   copies, so that a start's frames fit the rings (receive: one descriptor
//   a frame; transmit: the header and at most three pieces a frame).
//
// Interrupts: MSI-X mode (GPIE), no queue mapped to a vector (IVAR) and no
// other cause enabled (IMS), so copies raise none; send_msi() writes EICS
// bit 0, which the device sends as MSI-X vector 0 and clears again (EIAC).
//
// A VF (igbvf): the same copies on the VF's queue 0, through the VF's own
// registers and MSI-X, and as the VF on the bus. What only the PF controls
// (the port's reset and link, loopback, the receive filter, which VFs may
// receive and send) is set up by a VfHost on the PF, which the VF's user
// opens too (with the VF token). The PF is reset, and every pool but the
// VF's gets nothing: the filter's one address is the VF's, in its pool.
// QEMU's model sorts frames into pools (VMDq) and does queue n's DMA as
// VF n once that VF exists.
//
// A failed DMA: QEMU's model drops a frame whose source the IOMMU does not
// map (the transmit descriptor still completes), and ignores the outcome of
// its writes (the receive descriptor completes as if the data were
// written). The driver notices the first as frames sent but never received
// (EIO); the second it cannot see.
#include "igb/igb.h"

#include "igb/registers.h"
#include "vfiolab/mmio.h"
#include "vfiolab/sysfs.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

namespace vfiolab::igb {
namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned kQueue = 0;
constexpr std::uint32_t kMsiVector = 0;

// Frames.
constexpr std::uint32_t kHeaderSize = 64;  // the receive header buffer takes exactly this
constexpr std::uint64_t kFramePayload = 8192;
// QEMU decides whether the ring has room for a frame by its whole length,
// header included, against the packet buffers alone (igb_has_rxbufs): a
// packet buffer as large as the piece would leave the last frame of a start
// without room. So each is a unit larger; the device writes only the piece.
constexpr std::uint32_t kPacketBuffer = kFramePayload + kSrrctlPacketBufferUnit;
constexpr std::uint32_t kFcsSize = 4;
constexpr std::uint32_t kMaxFrame = kHeaderSize + kFramePayload;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMaxTxPerFrame = 1 + kFramePayload / kPage + 1;  // header, pieces split at pages
// A locally administered unicast address, the loopback frames' source and
// destination, and the only one the receive filter takes.
constexpr Mac kLoopbackMac = {0x02, 0x76, 0x66, 0x6c, 0x61, 0x62};
// VF n's: the same with 0x70 + n last.
constexpr Mac vf_mac(unsigned vf) {
  Mac mac = kLoopbackMac;
  mac[5] = static_cast<std::uint8_t>(0x70 + vf);
  return mac;
}
// IEEE 802 Local Experimental Ethertype 1: no protocol QEMU parses.
constexpr std::uint16_t kEthertype = 0x88b5;

// Rings and limits.
constexpr std::uint32_t kRxEntries = 4096;
constexpr std::uint32_t kTxEntries = 16384;
constexpr std::uint64_t kFramesPerCopy = 32;
constexpr std::uint64_t kMaxCopy = kFramesPerCopy * kFramePayload;
constexpr std::uint64_t kMaxCount = (kRxEntries - 1) / kFramesPerCopy;
static_assert(kMaxCount * kFramesPerCopy * kMaxTxPerFrame <= kTxEntries - 1);
static_assert(kMaxFrame <= 9728);

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

constexpr auto kResetTimeout = std::chrono::seconds(1);
constexpr auto kQueueTimeout = std::chrono::milliseconds(100);
// QEMU completes auto-negotiation 500 ms (virtual time) after it restarts.
constexpr auto kLinkTimeout = std::chrono::seconds(5);
constexpr auto kProbeTimeout = std::chrono::seconds(2);
// How long frames may still arrive after the last transmit descriptor is
// done; QEMU receives a looped-back frame before it completes the transmit.
constexpr auto kLossGrace = std::chrono::milliseconds(100);

std::uint64_t frames_for(std::uint64_t size) { return (size + kFramePayload - 1) / kFramePayload; }

template <typename Condition>
Result<void> poll(const PciDevice& device, std::string_view what, Clock::duration timeout, Condition done) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= deadline) {
      return std::unexpected(device_error(ETIMEDOUT, device.name(), "igb", fmt::format("{}: timed out", what)));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return {};
}

// Whether this process may reset the 82576 PF `pf` and put it in loopback:
// QEMU's model always, a real port only when named in kOptInVariable.
Result<void> check_consent(const PciDevice& pf) {
  auto subsystem_vendor = pf.config_read<std::uint16_t>(kPciSubsystemVendorId);
  if (!subsystem_vendor) return std::unexpected(subsystem_vendor.error());
  auto subsystem = pf.config_read<std::uint16_t>(kPciSubsystemId);
  if (!subsystem) return std::unexpected(subsystem.error());
  if (*subsystem_vendor == kSubsystemVendorQemu && *subsystem == kSubsystemQemu) return {};
  const char* allowed = std::getenv(kOptInVariable);
  if (allowed && pf.name() == allowed) return {};
  Error error = device_error(
      EPERM, pf.name(), "igb init",
      fmt::format("refusing to run: {:04x}:{:04x} with subsystem {:04x}:{:04x} is not QEMU's igb, and the "
                  "driver resets the port and puts it in MAC loopback. To allow it, set {}={}",
                  pf.vendor_id(), pf.device_id(), *subsystem_vendor, *subsystem, kOptInVariable, pf.name()));
  error.unsupported = true;
  return std::unexpected(std::move(error));
}

// The number of VFs the PF has enabled (0 without SR-IOV).
Result<unsigned> enabled_vfs(const PciDevice& pf) {
  auto sriov = pf.find_ext_capability(kPciExtCapSriov);
  if (!sriov) return std::unexpected(sriov.error());
  if (!*sriov) return 0u;
  auto vfs = pf.config_read<std::uint16_t>(**sriov + kSriovNumVfs);
  if (!vfs) return std::unexpected(vfs.error());
  return *vfs;
}

// What the PF controls for the whole port, for the PF's own copies and for
// a VF's: the reset, the link, loopback and the receive filter.
class Port {
 public:
  Port(const PciDevice& pf, Mmio bar0) : pf_(pf), bar0_(bar0) {}

  // Masks interrupts, stops the queues' DMA (GIO master disable) and resets
  // the MAC (CTRL.RST): every register back to its default, no queue or
  // interrupt cause enabled, the link down. With VFs enabled, theirs too.
  Result<void> reset() const {
    write32(kImc, ~0u);
    write32(kEimc, ~0u);
    write32(kRctl, 0);
    write32(kTctl, read32(kTctl) & ~kTctlEnable);
    write32(kCtrl, read32(kCtrl) | kCtrlGioMasterDisable);
    // The reset follows whether or not the master disable completes in time.
    (void)poll(pf_, "GIO master disable", kQueueTimeout,
               [&] { return !(read32(kStatus) & kStatusGioMasterEnable); });
    write32(kCtrl, read32(kCtrl) | kCtrlReset);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // no register access right after the reset
    if (auto r = poll(pf_, "CTRL.RST", kResetTimeout, [&] { return !(read32(kCtrl) & kCtrlReset); }); !r) return r;
    write32(kImc, ~0u);
    write32(kEimc, ~0u);
    return {};
  }

  // MSI-X mode, which a VF's vectors need too; no cause enabled.
  void msix_mode() const {
    write32(kGpie, kGpieNsicr | kGpieMsixMode | kGpiePba);
    write32(kIms, 0);
    (void)read32(kEicr);  // read to clear
  }

  // The receiver takes frames only with the link up (STATUS.LU). A real
  // port in MAC loopback gets it from CTRL.SLU with speed and duplex forced;
  // QEMU's model from auto-negotiation, restarted in the PHY.
  Result<void> start_link() const {
    write32(kCtrl, read32(kCtrl) | kCtrlSetLinkUp | kCtrlForceSpeed | kCtrlForceDuplex | kCtrlSpeed1000 |
                       kCtrlFullDuplex);
    write32(kMdic, mdic_write(kPhyControl,
                              kBmcrAutonegEnable | kBmcrRestartAutoneg | kBmcrSpeed1000 | kBmcrFullDuplex));
    if (auto r = poll(pf_, "MDIC write", kQueueTimeout, [&] { return (read32(kMdic) & kMdicReady) != 0; }); !r) {
      return r;
    }
    if (const std::uint32_t mdic = read32(kMdic); mdic & kMdicError) {
      return std::unexpected(
          device_error(EIO, pf_.name(), "igb init", fmt::format("PHY control write failed: MDIC {:#x}", mdic)));
    }
    return {};
  }

  // Exact match on one address, nothing else: no promiscuous modes, no
  // broadcast, an empty multicast table. `pool_bits` (RAH.POOLSEL) are the
  // pools it goes to when pools are on (VMDq).
  void filter_exactly(const Mac& mac, std::uint32_t pool_bits) const {
    for (unsigned n = 0; n < kMtaEntries; ++n) write32(kMta + 4 * n, 0);
    for (unsigned n = 1; n < kRaEntries; ++n) write32(rah(n), 0);
    write32(ral(0), mac[0] | (mac[1] << 8) | (mac[2] << 16) | (std::uint32_t{mac[3]} << 24));
    write32(rah(0), mac[4] | (mac[5] << 8) | pool_bits | kRahAddressValid);
  }

  // Receive (frames up to kMaxFrame, CRC stripped) and transmit on, and
  // what is transmitted is received again (MAC loopback).
  void enable_loopback() const {
    write32(kRlpml, kMaxFrame + kFcsSize);
    write32(kRctl, kRctlEnable | kRctlLongPackets | kRctlMacLoopback | kRctlStripCrc);
    write32(kTctl, read32(kTctl) | kTctlEnable | kTctlPadShortPackets);
  }

  std::uint32_t read32(std::uint32_t offset) const { return bar0_.read32(offset); }
  void write32(std::uint32_t offset, std::uint32_t value) const { bar0_.write32(offset, value); }

 private:
  const PciDevice& pf_;
  Mmio bar0_;
};

class IgbDriver final : public Driver {
 public:
  // The PF's driver when `host` is null, else the driver of host's VF.
  IgbDriver(PciDevice& device, VfHost* host) : Driver(device), host_(host) {}
  std::string_view name() const override { return host_ ? kVfName : kName; }
  std::uint64_t region_size() const override { return kRegionSize; }
  // See the top of this file: a blocked read loses a frame, which the
  // driver reports, but a blocked write completes like any other.
  bool reports_dma_errors() const override { return false; }
  ~IgbDriver() override { (void)remove(); }

 protected:
  Result<void> may_drive() const override {
    if (!host_) return check_consent(device());
    // The host checked the consent for its PF; this must be its VF.
    VFIOLAB_ASSIGN_OR_RETURN(const auto vf, Sysfs().sriov_vf(host_->pf().bdf(), host_->vf()));
    if (!vf || *vf != device().bdf()) {
      return std::unexpected(driver_error(
          EINVAL, "igbvf init",
          fmt::format("this is not VF {} of the host's PF {} (that is {})", host_->vf(), host_->pf().name(),
                      vf ? vf->str() : std::string("absent"))));
    }
    return {};
  }

  Result<void> do_init() override {
    if (!bar0_) return std::unexpected(driver_error(ENODEV, "igb init", "BAR0 is not mapped"));
    if (region().iova % 128) {
      return std::unexpected(driver_error(EINVAL, "igb init", "the region's IOVA is not 128-byte aligned"));
    }
    if (host_) {
      // The PF's state is the host's; the VF resets itself, and the host
      // answers that (its receive and transmit enables, cleared by it).
      if (auto r = reset_vf(); !r) return r;
      host_->vf_reset_done();
    } else {
      if (auto r = check_no_vfs(); !r) return r;
      if (auto r = port().reset(); !r) return r;
      reset_rings();
    }
    std::memset(region_at(0), 0, kRegionSize);
    if (auto r = device().enable_irqs(IrqIndex::msix, 1); !r) return r;
    set_up_interrupts();
    if (!host_) {
      if (auto r = port().start_link(); !r) return r;
      port().filter_exactly(kLoopbackMac, 0);
      write32(kMrqc, 0);  // one queue: no RSS, no VMDq pools
    }
    if (auto r = set_up_queues(); !r) return r;
    if (!host_) port().enable_loopback();
    write_header(host_ ? host_->mac() : kLoopbackMac);
    if (auto r = wait_for_link(); !r) return r;
    if (auto r = self_test(); !r) return r;
    set_limits(kMaxCopy, kMaxCount, kMsiVector);
    return {};
  }

  void do_remove() override {
    // Best effort: the reset stops the device's DMA whatever its outcome,
    // and remove() has nothing to report it to.
    if (bar0_) (void)(host_ ? reset_vf() : port().reset());
    (void)device().disable_irqs(IrqIndex::msix);
  }

  Result<void> do_memcpy_start(std::uint64_t src, std::uint64_t dst, std::uint64_t size,
                               std::uint64_t count) override {
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

  Result<void> do_memcpy_wait(Clock::time_point deadline) override {
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

  Result<void> do_send_msi() override {
    write32(kEics, 1u << kMsiVector);
    return {};
  }

 private:
  Port port() const { return Port(device(), bar0_); }

  // With VFs enabled, queue n belongs to VF n % 8: QEMU's model then reads
  // and writes queue 0's descriptors and buffers as VF 0, through VF 0's
  // IOMMU domain, not the PF's.
  Result<void> check_no_vfs() const {
    auto vfs = enabled_vfs(device());
    if (!vfs) return std::unexpected(vfs.error());
    if (*vfs == 0) return {};
    Error error = driver_error(EBUSY, "igb init",
                               fmt::format("{} VFs are enabled, and queue 0, the driver's, is VF 0's then; "
                                           "set sriov_numvfs to 0 first",
                                           *vfs));
    error.unsupported = true;
    return std::unexpected(std::move(error));
  }

  // A VF's own reset (VTCTRL.RST): its queues stop, and the PF learns of
  // it (VFLRE) and must enable the VF's receive and transmit again.
  Result<void> reset_vf() {
    write32(kEimc, ~0u);
    write32(kCtrl, kVfResetBit);
    if (auto r = poll(device(), "VTCTRL.RST", kResetTimeout, [&] { return !(read32(kCtrl) & kVfResetBit); }); !r) {
      return r;
    }
    write32(kEimc, ~0u);
    reset_rings();
    return {};
  }

  void reset_rings() {
    rx_tail_ = rx_clean_ = 0;
    tx_tail_ = tx_last_ = 0;
    frames_total_ = frames_done_ = 0;
  }

  // MSI-X vector 0 (the VF's own vector 0 on a VF): no throttling, so
  // every EICS write is a message; no queue raises it, and it clears
  // itself (EIAC). The PF also sets the port's MSI-X mode, which the host
  // does for a VF.
  void set_up_interrupts() {
    if (!host_) port().msix_mode();
    write32(eitr(kMsiVector), 0);
    const unsigned ivars = host_ ? 1 : kIvarCount;  // a VF has one IVAR for its queues
    for (unsigned n = 0; n < ivars; ++n) write32(ivar(n), 0);
    write32(kIvarMisc, 0);
    (void)read32(kEicr);  // read to clear
    write32(kEiac, 1u << kMsiVector);
    write32(kEims, 1u << kMsiVector);
  }

  Result<void> wait_for_link() {
    return poll(device(), "link up (STATUS.LU)", kLinkTimeout,
                [&] { return (read32(kStatus) & kStatusLinkUp) != 0; });
  }

  Result<void> set_up_queues() {
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
      if (auto r = poll(device(), "queue enable", kQueueTimeout, [&] { return (read32(reg) & kQueueEnable) != 0; }); !r) {
        return r;
      }
    }
    return {};
  }

  // The header every frame starts with: destination, source, ethertype,
  // then zeros to kHeaderSize.
  void write_header(const Mac& mac) {
    std::byte* header = region_at(kTxHeaderOffset);
    std::memset(header, 0, kHeaderSize);
    std::memcpy(header, mac.data(), mac.size());
    std::memcpy(header + 6, mac.data(), mac.size());
    header[12] = static_cast<std::byte>(kEthertype >> 8);
    header[13] = static_cast<std::byte>(kEthertype & 0xff);
  }

  // One short frame between buffers of the region, before any copy the
  // caller asks for: it proves the loopback works, and that the receiver
  // splits the header off as the driver relies on (QEMU 10's igb does, in
  // igb_do_ps; a model or part that does not would write the header into
  // every destination and overrun it by 64 bytes).
  Result<void> self_test() {
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
    if (auto r = do_memcpy_start(region_iova(kProbeSourceOffset), region_iova(kProbeDestinationOffset), kProbeSize, 1);
        !r) {
      return r;
    }
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

  std::uint64_t frame_payload(std::uint64_t frame) const {
    return std::min(kFramePayload, copy_size_ - frame * kFramePayload);
  }

  // Consumes the receive descriptors the device has written back, checking
  // each: one whole frame (EOP), no errors, the piece's length.
  void reap() {
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

  bool tx_done() const {
    auto* tx = reinterpret_cast<const volatile std::uint32_t*>(region_at(kTxRingOffset));
    return (tx[tx_last_ * (sizeof(TxDescriptor) / 4) + kTxWbStatusWord] & kTxdStatusDone) != 0;
  }

  // Every frame was sent and some never arrived: the device dropped them
  // (QEMU does when the IOMMU blocks the read of a frame's source). The
  // receive buffers they left behind would take the next copy's frames, so
  // the receive queue starts again empty.
  Result<void> lost_frames() {
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

  Result<void> restart_receive_queue() {
    write32(queue_.rxdctl(), read32(queue_.rxdctl()) & ~kQueueEnable);
    if (auto r = poll(device(), "receive queue disable", kQueueTimeout,
                      [&] { return !(read32(queue_.rxdctl()) & kQueueEnable); });
        !r) {
      return r;
    }
    write32(queue_.rdh(), 0);
    write32(queue_.rdt(), 0);
    rx_tail_ = rx_clean_ = 0;
    write32(queue_.rxdctl(), read32(queue_.rxdctl()) | kQueueEnable);
    return poll(device(), "receive queue enable", kQueueTimeout,
                [&] { return (read32(queue_.rxdctl()) & kQueueEnable) != 0; });
  }

  std::uint32_t read32(std::uint32_t offset) const { return bar0_.read32(offset); }
  void write32(std::uint32_t offset, std::uint32_t value) { bar0_.write32(offset, value); }

  VfHost* const host_;
  Mmio bar0_{device().bar(0).address()};
  const QueueRegisters queue_ = host_ ? kVfQueue0 : pf_queue(kQueue);
  // Ring positions: the next receive descriptor to fill and to check, the
  // next transmit descriptor to fill and the one that reports completion.
  std::uint32_t rx_tail_ = 0;
  std::uint32_t rx_clean_ = 0;
  std::uint32_t tx_tail_ = 0;
  std::uint32_t tx_last_ = 0;
  // The start in flight.
  std::uint64_t copy_size_ = 0;
  std::uint64_t frames_per_copy_ = 1;
  std::uint64_t frames_total_ = 0;
  std::uint64_t frames_done_ = 0;
  std::optional<std::string> failure_;
  std::optional<Clock::time_point> tx_done_at_;
};

}  // namespace

bool probe(const PciDevice& device) {
  return device.vendor_id() == kVendorIntel &&
         std::find(kDevice82576.begin(), kDevice82576.end(), device.device_id()) != kDevice82576.end();
}

std::unique_ptr<Driver> create(PciDevice& device) { return std::make_unique<IgbDriver>(device, nullptr); }

namespace {
Port pf_port(const PciDevice& pf) { return Port(pf, Mmio(pf.bar(0).address())); }
}  // namespace

bool probe_vf(const PciDevice& device) {
  return device.vendor_id() == kVendorIntel && device.device_id() == kDevice82576Vf;
}

std::unique_ptr<Driver> create_vf(PciDevice& vf, VfHost& host) { return std::make_unique<IgbDriver>(vf, &host); }

Result<std::unique_ptr<VfHost>> VfHost::create(PciDevice& pf, unsigned vf) {
  auto fail = [&](int errnum, std::string why) {
    return std::unexpected(device_error(errnum, pf.name(), "igb VF host", std::move(why)));
  };
  if (!probe(pf)) return fail(ENODEV, fmt::format("{:04x}:{:04x} is not an 82576 PF", pf.vendor_id(), pf.device_id()));
  if (!pf.bar(0).address()) return fail(ENODEV, "BAR0 is not mapped");
  if (auto r = check_consent(pf); !r) return std::unexpected(r.error());
  auto vfs = enabled_vfs(pf);
  if (!vfs) return std::unexpected(vfs.error());
  if (vf >= *vfs || vf >= kMaxVfs) return fail(EINVAL, fmt::format("VF {} asked for, {} enabled", vf, *vfs));

  std::unique_ptr<VfHost> host(new VfHost(pf, vf));
  const Port port = pf_port(pf);
  if (auto r = port.reset(); !r) return std::unexpected(r.error());
  port.msix_mode();
  if (auto r = port.start_link(); !r) return std::unexpected(r.error());
  // Pools by address: the VF's address goes to its pool, nothing else to
  // any (no default pool). Until the VF has reset itself, no pool may
  // receive or send.
  port.write32(kVfre, 0);
  port.write32(kVfte, 0);
  port.filter_exactly(host->mac(), rah_pool(vf));
  port.write32(kVtCtl, kVtCtlDisableDefaultPool);
  port.write32(vmolr(vf), kVmolrStripCrc | kVmolrLongPackets | (kMaxFrame + kFcsSize));
  port.write32(kMrqc, kMrqcVmdq);
  port.enable_loopback();
  return host;
}

VfHost::~VfHost() {
  // Stops every queue, the VF's included; nothing to report a failure to.
  (void)pf_port(pf_).reset();
}

Mac VfHost::mac() const { return vf_mac(vf_); }

void VfHost::vf_reset_done() {
  const Port port = pf_port(pf_);
  port.write32(kVflre, 1u << vf_);
  port.write32(kVfre, port.read32(kVfre) | (1u << vf_));
  port.write32(kVfte, port.read32(kVfte) | (1u << vf_));
}

}  // namespace vfiolab::igb
