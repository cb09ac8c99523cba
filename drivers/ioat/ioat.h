// A userspace driver for Intel CBDMA ("ioat", I/OAT DMA 3.x) on channel 0:
// copies with legacy DMA descriptors on a ring in the driver's region, and
// MSIs raised by NULL descriptors through MSI-X vector 0.
#pragma once

#include "vfiolab/driver.h"

#include <string_view>

namespace vfiolab::ioat {

inline constexpr std::string_view kName = "ioat";
// Intel devices that Linux's ioat driver serves (ioat::kDeviceIds).
bool probe(const PciDevice& device);
DriverHandle create(PciDevice& device, const DriverOptions& options);

}  // namespace vfiolab::ioat
