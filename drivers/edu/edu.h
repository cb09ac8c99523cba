// QEMU's educational PCI device (hw/misc/edu.c, 1234:11e8): DMA between
// memory and its 4 KiB internal buffer, and an MSI on request.
#pragma once

#include "vfiolab/driver.h"

#include <memory>

namespace vfiolab::edu {

inline constexpr std::string_view kName = "edu";
bool probe(const PciDevice& device);
std::unique_ptr<Driver> create(PciDevice& device);

}  // namespace vfiolab::edu
