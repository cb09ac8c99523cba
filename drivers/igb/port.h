// What the 82576 PF controls for the whole port, shared by the PF's driver
// (pf.cpp) and a VF's host (vf_host.cpp): the reset, the link, loopback and
// the receive filter; and what both need to decide whether they may.
#pragma once

#include "igb/igb.h"
#include "igb/registers.h"
#include "vfiolab/mmio.h"

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <thread>

namespace vfiolab::igb {

using Clock = std::chrono::steady_clock;

// Frames: a 64-byte header and up to 8 KiB of a copy (loopback_driver.h).
inline constexpr std::uint32_t kHeaderSize = 64;  // the receive header buffer takes exactly this
inline constexpr std::uint64_t kFramePayload = 8192;
inline constexpr std::uint32_t kFcsSize = 4;
inline constexpr std::uint32_t kMaxFrame = kHeaderSize + kFramePayload;
static_assert(kMaxFrame <= 9728);
// A locally administered unicast address, the loopback frames' source and
// destination, and the only one the receive filter takes.
inline constexpr Mac kLoopbackMac = {0x02, 0x76, 0x66, 0x6c, 0x61, 0x62};
// VF n's: the same with 0x70 + n last.
constexpr Mac vf_mac(unsigned vf) {
  Mac mac = kLoopbackMac;
  mac[5] = static_cast<std::uint8_t>(0x70 + vf);
  return mac;
}

inline constexpr auto kResetTimeout = std::chrono::seconds(1);
inline constexpr auto kQueueTimeout = std::chrono::milliseconds(100);

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

// Whether `pf` is QEMU's emulated 82576 (its subsystem IDs, 1af4:1100).
Result<bool> is_qemu_model(const PciDevice& pf);

// Whether this process may reset the 82576 PF `pf` and put it in loopback:
// QEMU's model always, a real port only with the igb driver's consent.
Result<void> check_consent(const PciDevice& pf, const DriverOptions& options);
// The number of VFs the PF has enabled (0 without SR-IOV).
Result<unsigned> enabled_vfs(const PciDevice& pf);

// What the PF controls for the whole port, for the PF's own copies and for
// a VF's: the reset, the link, loopback and the receive filter.
class Port {
 public:
  Port(const PciDevice& pf, Mmio bar0) : pf_(pf), bar0_(bar0) {}

  // Masks interrupts, stops the queues' DMA (GIO master disable) and resets
  // the MAC (CTRL.RST): every register back to its default, no queue or
  // interrupt cause enabled, the link down. With VFs enabled, theirs too.
  Result<void> reset() const;

  // MSI-X mode, which a VF's vectors need too; no cause enabled.
  void msix_mode() const;

  // The receiver takes frames only with the link up (STATUS.LU). QEMU's
  // model (subsystem 1af4:1100) sets it when auto-negotiation, restarted in
  // the PHY, is done, and loops frames back in the MAC (RCTL.LBM). A
  // real 82576 loops frames back in its PHY (datasheet 3.5.6.1: "Use PHY
  // Loopback instead of MAC Loopback on the 82576"): internal loopback at
  // 1 Gb/s full duplex with auto-negotiation off (3.5.6.3.1), then the MAC
  // forced to the same with the link up (CTRL.SLU), the physical link
  // irrelevant. Not yet verified on a real 82576.
  Result<void> start_link() const;

  // Exact match on one address, nothing else: no promiscuous modes, no
  // broadcast, an empty multicast table. `pool_bits` (RAH.POOLSEL) are the
  // pools it goes to when pools are on (VMDq).
  void filter_exactly(const Mac& mac, std::uint32_t pool_bits) const;

  // Receive (frames up to kMaxFrame, CRC stripped) and transmit on, and
  // what is transmitted is received again (MAC loopback).
  void enable_loopback() const;

  std::uint32_t read32(std::uint32_t offset) const { return bar0_.read32(offset); }
  void write32(std::uint32_t offset, std::uint32_t value) const { bar0_.write32(offset, value); }

 private:
  // A write to the internal PHY's register `reg` through MDIC, waited for.
  Result<void> write_phy(std::uint32_t reg, std::uint16_t value) const;

  const PciDevice& pf_;
  Mmio bar0_;
};

}  // namespace vfiolab::igb
