// The copies of the 82576's driver, on the PF's queue 0 or a VF's: one
// receive and one transmit queue (queue 0), both in the driver's region,
// and the MAC in loopback (RCTL.LBM): what the port transmits, it receives.
// The PF's driver (pf.cpp) and the VF's (vf.cpp) bring their function up
// and hand it to these steps.
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
// A failed DMA: QEMU's model drops a frame whose source the IOMMU does not
// map (the transmit descriptor still completes), and ignores the outcome of
// its writes (the receive descriptor completes as if the data were
// written). The driver notices the first as frames sent but never received
// (EIO); the second it cannot see.
#pragma once

#include "igb/port.h"

#include <cstdint>
#include <optional>
#include <string>

namespace vfiolab::igb {

class LoopbackDriver : public Driver {
 public:
  LoopbackDriver(PciDevice& device, QueueRegisters queue) : Driver(device), queue_(queue) {}
  std::uint64_t region_size() const override;
  // See above: a blocked read loses a frame, which the driver reports, but
  // a blocked write completes like any other.
  bool reports_dma_errors() const override { return false; }

 protected:
  Result<void> do_memcpy_start(std::uint64_t src, std::uint64_t dst, std::uint64_t size,
                               std::uint64_t count) override;
  Result<void> do_memcpy_wait(Clock::time_point deadline) override;
  Result<void> do_send_msi() override;

  // The steps of the PF's and the VF's do_init(), in this order, around
  // their own.
  // BAR0 mapped, and the region aligned as the rings need.
  Result<void> check_region() const;
  // The rings empty, the region cleared, MSI-X vector 0 enabled.
  Result<void> start_rings();
  // MSI-X vector 0 (the VF's own vector 0 on a VF): no throttling, so
  // every EICS write is a message; no queue raises it (`ivars` IVARs
  // cleared), and it clears itself (EIAC). The port's MSI-X mode is the
  // PF's (its driver's, or a VF's host's) to set first.
  void set_up_interrupts(unsigned ivars);
  Result<void> set_up_queues();
  // Frames from and to `mac`; once the link is up, the self-test, and the
  // limits published.
  Result<void> finish_init(const Mac& mac);

  Mmio bar0() const { return bar0_; }
  std::uint32_t read32(std::uint32_t offset) const { return bar0_.read32(offset); }
  void write32(std::uint32_t offset, std::uint32_t value) { bar0_.write32(offset, value); }

 private:
  void reset_rings();

  Result<void> wait_for_link();

  // The header every frame starts with: destination, source, ethertype,
  // then zeros to kHeaderSize.
  void write_header(const Mac& mac);

  // One short frame between buffers of the region, before any copy the
  // caller asks for: it proves the loopback works, and that the receiver
  // splits the header off as the driver relies on (QEMU 10's igb does, in
  // igb_do_ps; a model or part that does not would write the header into
  // every destination and overrun it by 64 bytes).
  Result<void> self_test();

  std::uint64_t frame_payload(std::uint64_t frame) const;

  // Consumes the receive descriptors the device has written back, checking
  // each: one whole frame (EOP), no errors, the piece's length.
  void reap();

  bool tx_done() const;

  // Every frame was sent and some never arrived: the device dropped them
  // (QEMU does when the IOMMU blocks the read of a frame's source). The
  // receive buffers they left behind would take the next copy's frames, so
  // the receive queue starts again empty.
  Result<void> lost_frames();

  Result<void> restart_receive_queue();

  Mmio bar0_{device().bar(0).address()};
  const QueueRegisters queue_;
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

}  // namespace vfiolab::igb
