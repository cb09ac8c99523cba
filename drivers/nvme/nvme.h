// NVMe controllers (QEMU's nvme device, 1b36:0010, and real ones): a copy is
// a write of the source to a scratch LBA range of namespace 1 followed by a
// read of it into the destination. That destroys data, so on anything but
// QEMU's controller the driver refuses to start unless
// VFIOLAB_NVME_DESTROY_DATA names the device's BDF.
#pragma once

#include "vfiolab/driver.h"

#include <memory>

namespace vfiolab::nvme {

inline constexpr std::string_view kName = "nvme";
inline constexpr const char* kOptInVariable = "VFIOLAB_NVME_DESTROY_DATA";
// Any NVMe controller: class code 01:08:02 (mass storage, NVM, NVM Express).
bool probe(const PciDevice& device);
std::unique_ptr<Driver> create(PciDevice& device);

}  // namespace vfiolab::nvme
