// vfio-setup restore: put devices back where their state files say they were.
#include "commands.h"
#include "common.h"

#include <fmt/format.h>

namespace vfiolab::setup {
namespace fs = std::filesystem;

// Puts a device back where its state says it was, says so, and forgets the
// state. On an error the state file stays, for a later restore.
Result<void> restore_device(const DeviceState& state) {
  Sysfs sysfs;
  auto bdf = parse_bdf(state.bdf);
  if (!bdf) return std::unexpected(device_error(0, state.bdf, "restore", bdf.error().message()));
  const fs::path dir = sysfs.device_dir(*bdf);
  // Only a device known to be gone loses its state: an error finding out
  // keeps it for the next restore.
  auto present = sysfs.exists(*bdf);
  if (!present) return std::unexpected(on_device(state.bdf, "restore", present.error()));
  if (!*present) {
    say(fmt::format("{}: the device is gone (hot-unplugged?); dropping its state", state.bdf));
    if (auto removed = remove_state(state_file(state.bdf)); !removed) {
      return std::unexpected(on_device(state.bdf, "restore", removed.error()));
    }
    return {};
  }
  VFIOLAB_ASSIGN_OR_RETURN(const auto before, about_device(sysfs.driver(*bdf), state.bdf, "restore"));
  Result<void> done;
  // VFs that were not there go first, while the PF is still on the driver
  // that made them: the kernel changes a count only by way of 0.
  VFIOLAB_ASSIGN_OR_RETURN(const auto vfs_now, about_device(sysfs.sriov_numvfs(*bdf), state.bdf, "restore"));
  if (state.sriov_numvfs && vfs_now.value_or(0) > 0 && vfs_now != state.sriov_numvfs) {
    done = write_sysfs(dir / "sriov_numvfs", "0");
  }
  const std::optional<std::string> wanted =
      state.driver.empty() ? std::nullopt : std::optional<std::string>(state.driver);
  if (done && before && before != wanted) done = write_sysfs(dir / "driver" / "unbind", state.bdf);
  // An empty write clears driver_override.
  if (done) done = write_sysfs(dir / "driver_override", state.driver_override.empty() ? "\n" : state.driver_override);
  // A driver or VF count that cannot be read here is acted on as if wrong:
  // the checks after read them again and report the error.
  if (done && wanted && sysfs.driver(*bdf).value_or(std::nullopt) != wanted) {
    // A refused bind falls back to a probe; the check below judges both.
    if (!write_sysfs(fs::path("/sys/bus/pci/drivers") / *wanted / "bind", state.bdf)) {
      (void)write_sysfs("/sys/bus/pci/drivers_probe", state.bdf);
    }
  }
  if (!done) return std::unexpected(on_device(state.bdf, "restore", done.error()));
  VFIOLAB_ASSIGN_OR_RETURN(const auto after, about_device(sysfs.driver(*bdf), state.bdf, "restore"));
  if (after != wanted) {
    return std::unexpected(device_error(
        0, state.bdf, "restore", fmt::format("it is on {}, not {}", driver_or_none(after), driver_or_none(wanted))));
  }
  if (state.sriov_numvfs.value_or(0) > 0 && sysfs.sriov_numvfs(*bdf).value_or(std::nullopt) != state.sriov_numvfs) {
    if (auto vfs = write_sysfs(dir / "sriov_numvfs", std::to_string(*state.sriov_numvfs)); !vfs) {
      return std::unexpected(on_device(state.bdf, "restore", vfs.error()));
    }
  }
  if (state.sriov_numvfs) {
    VFIOLAB_ASSIGN_OR_RETURN(const auto vfs_after, about_device(sysfs.sriov_numvfs(*bdf), state.bdf, "restore"));
    if (vfs_after != state.sriov_numvfs) {
      return std::unexpected(device_error(
          0, state.bdf, "restore", fmt::format("it has {} VFs, not {}", vfs_after.value_or(0), *state.sriov_numvfs)));
    }
  }
  if (auto removed = remove_state(state_file(state.bdf)); !removed) {
    return std::unexpected(on_device(state.bdf, "restore", removed.error()));
  }
  std::string vfs_said;
  if (state.sriov_numvfs && vfs_now != state.sriov_numvfs) {
    vfs_said = fmt::format(", {} -> {} VFs", vfs_now.value_or(0), *state.sriov_numvfs);
  }
  say(fmt::format("{}: {} -> {}{}", state.bdf, driver_or_none(before), driver_or_none(after), vfs_said));
  if (auto parameter = restore_enable_sriov(state); !parameter) {
    // The device itself is back; only the global parameter stayed on.
    say(on_device(state.bdf, "restore", parameter.error()));
  }
  return {};
}

void report_restore_failure(const DeviceState& state, const Error& error) {
  say(fmt::format("{}; state kept in {}", error.message(), state_file(state.bdf).string()));
}

int command_restore(const std::vector<std::string>& args) {
  if (auto root = require_root("restore", "restoring devices writes to sysfs"); !root) {
    say(root.error());
    return kExitFailed;
  }
  std::vector<std::string> names;
  for (const auto& arg : args) {
    auto bdf = parse_bdf(arg);
    if (!bdf) {
      say(bdf.error());
      return kExitFailed;
    }
    names.push_back(bdf->str());
  }
  if (names.empty()) {
    auto recorded = recorded_devices();
    if (!recorded) {
      say(recorded.error());
      return kExitFailed;
    }
    names = std::move(*recorded);
  }
  bool ok = true;
  int restored = 0;
  for (const auto& name : names) {
    auto recorded = load_state(name);
    if (!recorded) {
      say(recorded.error());
      ok = false;
      continue;
    }
    if (!*recorded) {
      if (!args.empty()) say(fmt::format("{}: nothing recorded; left as it is", name));
      continue;
    }
    if (auto done = restore_device(**recorded); !done) {
      report_restore_failure(**recorded, done.error());
      ok = false;
    } else {
      ++restored;
    }
  }
  if (restored == 0 && ok) say("nothing to restore");
  return ok ? kExitOk : kExitFailed;
}

}  // namespace vfiolab::setup
