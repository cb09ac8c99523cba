// vfio-setup list: PCI devices, their drivers and IOMMU groups, and what
// vfio-setup holds.
#include "commands.h"
#include "common.h"

#include <fmt/format.h>

#include <algorithm>
#include <system_error>

namespace vfiolab::setup {
namespace fs = std::filesystem;

int command_list() {
  Sysfs sysfs;
  std::vector<Bdf> devices;
  std::error_code ec;
  for (fs::directory_iterator it(kPciDevices, ec), end; !ec && it != end; it.increment(ec)) {
    if (auto bdf = parse_bdf(it->path().filename().string())) devices.push_back(*bdf);
  }
  // A machine without PCI has nothing to list; anything else is an error.
  if (ec && ec != std::errc::no_such_file_or_directory) {
    say(make_error(ec.value(), fmt::format("cannot list {}", kPciDevices)));
    return kExitFailed;
  }
  std::sort(devices.begin(), devices.end());
  fmt::print("{:<13} {:<9} {:<12} {:>5}  {}\n", "device", "id", "driver", "group", "vfio-setup");
  for (const auto& bdf : devices) {
    // An attribute that cannot be read shows as '?'.
    const auto group = sysfs.iommu_group(bdf);
    const auto driver = sysfs.driver(bdf);
    std::string held;
    if (auto recorded = load_state(bdf.str()); !recorded) {
      // State files are root's: one a user cannot read is not known to be corrupt.
      held = recorded.error().errnum != 0 ? "STATE FILE UNREADABLE" : "CORRUPT STATE FILE";
    } else if (const auto& state = *recorded) {
      held = fmt::format("held (was on {})", state->driver.empty() ? "no driver" : state->driver);
    }
    fmt::print("{:<13} {:04x}:{:04x} {:<12} {:>5}  {}\n", bdf.str(), sysfs.vendor(bdf).value_or(0),
               sysfs.device_id(bdf).value_or(0), driver ? driver_or_none(*driver) : "?",
               !group ? "?" : *group ? std::to_string(**group) : "-", held);
  }
  return kExitOk;
}

}  // namespace vfiolab::setup
