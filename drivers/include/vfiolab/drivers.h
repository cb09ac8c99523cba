// The drivers vfiolab has, and the choice of one for a device. Part of the
// drivers library (vfiolab-drivers), which sits above the core library.
#pragma once

#include "vfiolab/driver.h"
#include "vfiolab/pci_device.h"

#include <memory>
#include <span>
#include <string_view>

namespace vfiolab {

// One driver the registry knows: which devices it serves and how to make it.
struct DriverEntry {
  std::string_view name;
  // Whether the driver serves this device (by vendor and device ID, or by
  // class code for a standard interface such as NVMe).
  bool (*probe)(const PciDevice& device);
  DriverHandle (*create)(PciDevice& device, const DriverOptions& options);
};

// Every driver, in the order probe_driver() tries them.
std::span<const DriverEntry> driver_registry();
// The first driver whose probe accepts the device; unsupported (a SKIP)
// when none does.
Result<DriverHandle> probe_driver(PciDevice& device, const DriverOptions& options = {});

}  // namespace vfiolab
