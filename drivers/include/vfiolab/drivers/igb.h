// Intel 82576 SR-IOV from userspace: an 82576 VF (8086:10ca) makes the same
// copies as the PF's driver (drivers/igb) with its own queue and MSI-X, and
// DMA as the VF. Its driver (create_vf) needs the PF set up for it by a
// VfHost, as the PF's kernel driver would. Both functions are opened by one
// process, the VF with the PF's VF token. Not in the registry: the VF's
// driver needs its host.
#pragma once

#include "vfiolab/driver.h"
#include "vfiolab/pci_device.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

namespace vfiolab::igb {

// An 82576 physical function (Intel, one of the 82576 device IDs).
bool probe(const PciDevice& device);

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
  // without the igb driver's consent in `options`.
  static Result<std::unique_ptr<VfHost>> create(PciDevice& pf, unsigned vf, const DriverOptions& options);
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
DriverHandle create_vf(PciDevice& vf, VfHost& host);

}  // namespace vfiolab::igb
