// NVMe controllers (QEMU's nvme device, 1b36:0010, and real ones): a copy is
// a write of the source to a scratch LBA range of namespace 1 followed by a
// read of it into the destination. That destroys data, so on anything but
// QEMU's controller the driver refuses to start without consent
// (DriverOptions::consent naming "nvme").
#pragma once

#include "vfiolab/driver.h"

namespace vfiolab::nvme {

inline constexpr std::string_view kName = "nvme";
// Any NVMe controller: class code 01:08:02 (mass storage, NVM, NVM Express).
bool probe(const PciDevice& device);
DriverHandle create(PciDevice& device, const DriverOptions& options);

}  // namespace vfiolab::nvme
