// Intel 82576 Ethernet controllers (QEMU's igb, 8086:10c9, and real ones):
// a copy is frames sent to itself. With the MAC in loopback, each frame's
// transmit descriptors gather a 64-byte Ethernet header from the driver's
// region and a piece of the source; the receive queue splits the header off
// into the region again and writes the rest, the piece, to the destination.
// send_msi() sets the cause of MSI-X vector 0 (EICS).
//
// A real port is put into loopback and reset, so on anything but QEMU's
// model the driver refuses to start without consent (DriverOptions::consent
// naming "igb"; for a VF, the VfHost's, for its PF). The VF's driver and its
// host: vfiolab/drivers/igb.h.
#pragma once

#include "vfiolab/driver.h"
#include "vfiolab/drivers/igb.h"

#include <string_view>

namespace vfiolab::igb {

inline constexpr std::string_view kName = "igb";
// An 82576 physical function (Intel, one of the 82576 device IDs).
bool probe(const PciDevice& device);
DriverHandle create(PciDevice& device, const DriverOptions& options);

}  // namespace vfiolab::igb
