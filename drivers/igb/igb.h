// Intel 82576 Ethernet controllers (QEMU's igb, 8086:10c9, and real ones):
// a copy is frames sent to itself. With the MAC in loopback, each frame's
// transmit descriptors gather a 64-byte Ethernet header from the driver's
// region and a piece of the source; the receive queue splits the header off
// into the region again and writes the rest, the piece, to the destination.
// send_msi() sets the cause of MSI-X vector 0 (EICS).
//
// A real port is put into loopback and reset, so on anything but QEMU's
// model the driver refuses to start unless VFIOLAB_IGB_ALLOW names the
// device's BDF (the PF's, for a VF).
//
// A VF (8086:10ca) makes the same copies with its own queue and MSI-X, and
// DMA as the VF: its driver (create_vf) needs the PF set up for it by a
// VfHost, as the PF's kernel driver would. Both functions are opened by one
// process, the VF with the PF's VF token.
#pragma once

#include "vfiolab/driver.h"

#include <array>
#include <cstdint>
#include <memory>

namespace vfiolab::igb {

inline constexpr std::string_view kName = "igb";
inline constexpr const char* kOptInVariable = "VFIOLAB_IGB_ALLOW";
// An 82576 physical function (Intel, one of the 82576 device IDs).
bool probe(const PciDevice& device);
std::unique_ptr<Driver> create(PciDevice& device);

inline constexpr std::string_view kVfName = "igbvf";
using Mac = std::array<std::uint8_t, 6>;

// The PF's side of one VF's copies. create() resets the PF (every VF's
// queues stop), brings the link up in MAC loopback, sorts received frames
// into pools (VMDq) with one address in the filter, the VF's, in the VF's
// pool, and lets that pool take frames as long as its MAC's (LPE up to the
// driver's largest frame). The VF may receive and send only once it has
// reset itself and the host has answered (vf_reset_done), as a PF's driver
// answers a VF's reset message. The destructor resets the PF again.
class VfHost {
 public:
  // `pf`: an 82576 PF opened by this process, with more than `vf` VFs
  // enabled. Refuses (unsupported) what the PF driver refuses: a real port
  // not named in VFIOLAB_IGB_ALLOW.
  static Result<std::unique_ptr<VfHost>> create(PciDevice& pf, unsigned vf);
  ~VfHost();
  VfHost(const VfHost&) = delete;
  VfHost& operator=(const VfHost&) = delete;

  PciDevice& pf() const { return pf_; }
  unsigned vf() const { return vf_; }
  // The one address the filter takes: the VF's frames carry it.
  Mac mac() const;
  // After the VF's reset (VTCTRL.RST, which clears its receive and
  // transmit enables): enables them again and clears the PF's record of
  // the reset (VFLRE).
  void vf_reset_done();

 private:
  VfHost(PciDevice& pf, unsigned vf) : pf_(pf), vf_(vf) {}
  PciDevice& pf_;
  unsigned vf_;
};

// An 82576 VF.
bool probe_vf(const PciDevice& device);
// The VF driver, for the VF `host` was made for (EINVAL otherwise, at
// init). The host must outlive it.
std::unique_ptr<Driver> create_vf(PciDevice& vf, VfHost& host);

}  // namespace vfiolab::igb
