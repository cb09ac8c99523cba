// Every driver vfiolab has, one line each.
#include "vfiolab/drivers.h"

#include "dsa/dsa.h"
#include "edu/edu.h"
#include "igb/igb.h"
#include "ioat/ioat.h"
#include "nvme/nvme.h"

#include <fmt/format.h>

#include <cerrno>

namespace vfiolab {

std::span<const DriverEntry> driver_registry() {
  static const DriverEntry entries[] = {
      {edu::kName, edu::probe, edu::create},
      {nvme::kName, nvme::probe, nvme::create},
      {ioat::kName, ioat::probe, ioat::create},
      {dsa::kName, dsa::probe, dsa::create},
      {igb::kName, igb::probe, igb::create},
  };
  return entries;
}

Result<DriverHandle> probe_driver(PciDevice& device, const DriverOptions& options) {
  for (const DriverEntry& entry : driver_registry()) {
    if (entry.probe(device)) return entry.create(device, options);
  }
  std::string known;
  for (const DriverEntry& entry : driver_registry()) known += (known.empty() ? "" : ", ") + std::string(entry.name);
  return std::unexpected(unsupported_error(
      ENODEV, "probe_driver",
      fmt::format("{} ({:04x}:{:04x}): no vfiolab driver serves this device (drivers: {})", device.name(),
                  device.vendor_id(), device.device_id(), known)));
}

}  // namespace vfiolab
