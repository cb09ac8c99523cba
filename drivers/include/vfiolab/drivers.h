// The drivers vfiolab has, and the choice of one for a device. Part of the
// drivers library (vfiolab-drivers), which sits above the core library: the
// core declares the Driver interface, this side fills it in.
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
  std::unique_ptr<Driver> (*create)(PciDevice& device);
};

// Every driver, in the order probe_driver() tries them.
std::span<const DriverEntry> driver_registry();
// The first driver whose probe accepts the device; unsupported (a SKIP)
// when none does.
Result<std::unique_ptr<Driver>> probe_driver(PciDevice& device);

}  // namespace vfiolab
