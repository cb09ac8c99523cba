// QEMU's educational PCI device (hw/misc/edu.c, 1234:11e8): DMA between
// memory and its 4 KiB internal buffer, and an MSI on request.
#pragma once

#include "vfiolab/driver.h"

namespace vfiolab::edu {

inline constexpr std::string_view kName = "edu";
bool probe(const PciDevice& device);
DriverHandle create(PciDevice& device, const DriverOptions& options);

}  // namespace vfiolab::edu
