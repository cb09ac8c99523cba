// The one place where the suite turns its environment into DriverOptions:
// drivers never read it themselves. Every program that makes a driver for a
// device takes its options from here.
//   VFIOLAB_NVME_DESTROY_DATA=BDF  the nvme driver may overwrite the first
//                                  blocks of namespace 1 on a real controller
//   VFIOLAB_IGB_ALLOW=BDF          the igb driver may reset a real 82576 PF and
//                                  put it in MAC loopback (the PF's BDF, for a VF)
//   VFIOLAB_EDU_FULL_BUFFER=1      the emulator takes edu DMA to the end of its
//                                  buffer (lab/run probes it)
#pragma once

#include "vfiolab/driver.h"
#include "vfiolab/pci_device.h"

#include <cstdlib>
#include <string_view>

namespace vfiolab {

// For `device` (the PF, for a VF's host).
inline DriverOptions driver_options_from_environment(const PciDevice& device) {
  struct Consent {
    std::string_view driver;
    const char* variable;  // names the BDF of the one device it allows
  };
  static constexpr Consent kConsents[] = {{"nvme", "VFIOLAB_NVME_DESTROY_DATA"}, {"igb", "VFIOLAB_IGB_ALLOW"}};
  DriverOptions options;
  for (const Consent& consent : kConsents) {
    const char* allowed = std::getenv(consent.variable);
    if (allowed && device.name() == allowed) options.consent.emplace_back(consent.driver);
  }
  const char* full = std::getenv("VFIOLAB_EDU_FULL_BUFFER");
  options.edu_full_buffer = full && std::string_view(full) == "1";
  return options;
}

}  // namespace vfiolab
