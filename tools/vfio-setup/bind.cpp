// vfio-setup bind: record each device's state, then move it to vfio-pci.
#include "commands.h"
#include "common.h"

#include "vfiolab/text.h"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>

extern char** environ;

namespace vfiolab::setup {
namespace fs = std::filesystem;
namespace {

constexpr const char* kVfioPciDriver = "/sys/bus/pci/drivers/vfio-pci";
// Drivers that may share an IOMMU group with a vfio-pci device: VFIO accepts
// them (they manage DMA ownership themselves or do no DMA).
const std::set<std::string> kGroupSafeDrivers = {"vfio-pci", "pci-stub", "pcieport"};

bool vfio_pci_available() {
  std::error_code ec;
  if (fs::exists(kVfioPciDriver, ec)) return true;
  // A modular kernel: try to load it, quietly; the check below says whether
  // that worked.
  pid_t pid = 0;
  const char* argv[] = {"modprobe", "-q", "vfio-pci", nullptr};
  if (::posix_spawnp(&pid, "modprobe", nullptr, nullptr, const_cast<char* const*>(argv), environ) == 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  return fs::exists(kVfioPciDriver, ec);
}

// VFIO takes a whole IOMMU group: every other member must be named too, or
// be on a driver that can share the group.
Result<void> check_group(const Sysfs& sysfs, const Bdf& bdf, const std::vector<Bdf>& devices) {
  // Some IOMMU drivers (virtio-iommu) give a device its group only when a
  // driver probes it: without a group yet there is nothing to check, and
  // vfio-pci itself refuses a device that still has none.
  const std::string name = bdf.str();
  VFIOLAB_ASSIGN_OR_RETURN(const auto group, about_device(sysfs.iommu_group(bdf), name, "bind"));
  if (!group) return {};
  VFIOLAB_ASSIGN_OR_RETURN(const auto members, about_device(sysfs.iommu_group_members(*group), name, "bind"));
  std::string conflicts;
  for (const auto& member : members) {
    if (std::find(devices.begin(), devices.end(), member) != devices.end()) continue;
    VFIOLAB_ASSIGN_OR_RETURN(const auto driver, about_device(sysfs.driver(member), name, "bind"));
    if (driver && !kGroupSafeDrivers.contains(*driver)) {
      conflicts += fmt::format("{}{} ({})", conflicts.empty() ? "" : ", ", member.str(), *driver);
    }
  }
  if (conflicts.empty()) return {};
  return std::unexpected(device_error(0, bdf.str(), "bind",
                                      fmt::format("refused: IOMMU group {} also holds devices on host drivers: {}. "
                                                  "Name them too, or unbind them first.",
                                                  *group, conflicts)));
}

// Moves a recorded device to vfio-pci and says where it went. On an error
// the device may be half-way: the caller puts it back.
Result<void> move_to_vfio_pci(const Sysfs& sysfs, const Bdf& bdf, const DeviceState& state) {
  const fs::path dir = sysfs.device_dir(bdf);
  Result<void> done;
  if (state.sriov_numvfs.value_or(0) > 0) done = write_sysfs(dir / "sriov_numvfs", "0");
  if (done && !state.driver.empty() && state.driver != "vfio-pci") {
    done = write_sysfs(dir / "driver" / "unbind", state.bdf);
  }
  if (done) done = write_sysfs(dir / "driver_override", "vfio-pci");
  if (done && sysfs.driver(bdf) != "vfio-pci") {
    // drivers_probe reports an error when no driver takes the device; the
    // check below says what happened.
    (void)write_sysfs("/sys/bus/pci/drivers_probe", state.bdf);
  }
  const auto now = sysfs.driver(bdf);
  const auto group = sysfs.iommu_group(bdf);
  if (done && now == "vfio-pci") {
    say(fmt::format("{}: {} -> vfio-pci (IOMMU group {})", state.bdf, state.driver.empty() ? "(none)" : state.driver,
                    group && *group ? std::to_string(**group) : "?"));
    return {};
  }
  Error error = !done  ? on_device(state.bdf, "bind to vfio-pci", done.error())
                : !now ? on_device(state.bdf, "bind to vfio-pci", now.error())
                       : device_error(0, state.bdf, "bind to vfio-pci", "it ended up on " + driver_or_none(*now));
  if (group && !*group) error.context += "; it has no IOMMU group: is an IOMMU enabled (intel_iommu=on, amd_iommu=on)?";
  return std::unexpected(std::move(error));
}

}  // namespace

// The device `arg` names, when it is a BDF and the device is there.
Result<Bdf> present_device(const Sysfs& sysfs, const std::string& arg) {
  VFIOLAB_ASSIGN_OR_RETURN(const Bdf bdf, parse_bdf(arg));
  VFIOLAB_ASSIGN_OR_RETURN(const bool present, sysfs.exists(bdf));
  if (!present) {
    return std::unexpected(device_error(
        0, bdf.str(), "bind", fmt::format("is no PCI device ({} does not exist)", sysfs.device_dir(bdf).string())));
  }
  return bdf;
}

// Writes where the device is now to its state file, before anything about
// it changes: `restore` works even after this tool was killed.
Result<DeviceState> record_state(const Sysfs& sysfs, const Bdf& bdf) {
  DeviceState state;
  state.bdf = bdf.str();
  VFIOLAB_ASSIGN_OR_RETURN(const auto driver, about_device(sysfs.driver(bdf), state.bdf, "record state"));
  state.driver = driver.value_or("");
  auto override_text = text::read_file(sysfs.device_dir(bdf) / "driver_override");
  if (!override_text) return std::unexpected(on_device(state.bdf, "record state", override_text.error()));
  // The kernel shows an unset override as "(null)".
  std::string override_value = trimmed(std::move(*override_text));
  state.driver_override = override_value == "(null)" ? "" : override_value;
  VFIOLAB_ASSIGN_OR_RETURN(state.sriov_numvfs, about_device(sysfs.sriov_numvfs(bdf), state.bdf, "record state"));
  if (auto written = write_state(state_file(state.bdf), serialize(state)); !written) {
    return std::unexpected(on_device(state.bdf, "record state", written.error()));
  }
  return state;
}

int command_bind(const std::vector<std::string>& args, std::vector<std::string>* held) {
  if (args.empty()) {
    say("bind: name at least one BDF");
    return kExitUsage;
  }
  // Everything that could make bind refuse is checked, and every problem
  // said, before any device changes.
  if (auto root = require_root("bind", "binding devices writes to sysfs"); !root) {
    say(root.error());
    return kExitFailed;
  }
  Sysfs sysfs;
  std::vector<Bdf> devices;
  bool refused = false;
  for (const auto& arg : args) {
    auto bdf = present_device(sysfs, arg);
    if (!bdf) {
      say(bdf.error());
      refused = true;
    } else if (std::find(devices.begin(), devices.end(), *bdf) == devices.end()) {
      devices.push_back(*bdf);
    }
  }
  if (refused) return kExitFailed;
  if (!vfio_pci_available()) {
    say("vfio-pci is not available: the kernel has no CONFIG_VFIO_PCI and 'modprobe vfio-pci' did not load it");
    return kExitFailed;
  }
  for (const auto& bdf : devices) {
    if (auto recorded = load_state(bdf.str()); !recorded) {
      say(recorded.error());
      refused = true;
    }
    if (auto group = check_group(sysfs, bdf, devices); !group) {
      say(group.error());
      refused = true;
    }
  }
  if (refused) return kExitFailed;

  bool ok = true;
  for (const auto& bdf : devices) {
    const std::string name = bdf.str();
    if (auto recorded = load_state(name); recorded && *recorded && sysfs.driver(bdf) == "vfio-pci") {
      // Held by an earlier bind: its record of the host driver stays.
      say(fmt::format("{}: already held on vfio-pci", name));
      continue;
    }
    auto state = record_state(sysfs, bdf);
    if (!state) {
      say(fmt::format("{}; device left as it was", state.error().message()));
      ok = false;
      continue;
    }
    if (auto moved = move_to_vfio_pci(sysfs, bdf, *state); !moved) {
      say(fmt::format("{}; putting it back", moved.error().message()));
      if (auto restored = restore_device(*state); !restored) report_restore_failure(*state, restored.error());
      ok = false;
      continue;
    }
    if (held) held->push_back(name);
  }
  return ok ? kExitOk : kExitFailed;
}

}  // namespace vfiolab::setup
