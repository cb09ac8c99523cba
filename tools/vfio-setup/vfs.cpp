// vfio-setup vfs: give an SR-IOV PF a number of VFs, recording what to put
// back, and the steps run and restore share for vfio-pci's enable_sriov
// parameter.
#include "commands.h"
#include "common.h"

#include "vfiolab/text.h"

#include <fmt/format.h>

namespace vfiolab::setup {
namespace fs = std::filesystem;
namespace {

// vfio-pci's enable_sriov now; nullopt for a kernel without the parameter.
Result<std::optional<bool>> read_enable_sriov() {
  VFIOLAB_ASSIGN_OR_RETURN(const auto text, text::read_file_if_present(kVfioPciEnableSriov));
  if (!text) return std::optional<bool>();
  const std::string value = trimmed(*text);
  return std::optional<bool>(value == "Y" || value == "1");
}

// The value enable_sriov had before vfio-setup first turned it on, as some
// device's state still records it (other than `except`'s).
Result<std::optional<bool>> recorded_enable_sriov(const std::string& except) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto names, recorded_devices());
  for (const auto& name : names) {
    if (name == except) continue;
    auto state = load_state(name);
    if (state && *state && (*state)->vfio_pci_enable_sriov) return (*state)->vfio_pci_enable_sriov;
  }
  return std::optional<bool>();
}

}  // namespace

// Turns enable_sriov back off when this state turned it on and no other
// recorded PF still relies on it (its restore turns it off then).
Result<void> restore_enable_sriov(const DeviceState& state) {
  if (state.vfio_pci_enable_sriov != false) return {};
  VFIOLAB_ASSIGN_OR_RETURN(const auto others, recorded_enable_sriov(state.bdf));
  if (others) return {};
  VFIOLAB_TRY(write_sysfs(kVfioPciEnableSriov, "N"));
  say(fmt::format("vfio-pci enable_sriov: Y -> N"));
  return {};
}

// Gives a PF `count` VFs (0: none). The PF's state is recorded first when
// nothing is yet, so `restore` puts its previous count back; a PF on
// vfio-pci needs vfio-pci's enable_sriov, which is turned on and recorded
// in the same state to be turned off again.
Result<void> set_vfs(const Bdf& pf, unsigned count) {
  Sysfs sysfs;
  const std::string name = pf.str();
  VFIOLAB_ASSIGN_OR_RETURN(const auto total, about_device(sysfs.sriov_totalvfs(pf), name, "vfs"));
  if (!total || *total == 0) {
    return std::unexpected(device_error(0, name, "vfs", "the device has no SR-IOV (no sriov_totalvfs, or 0)"));
  }
  if (count > *total) {
    return std::unexpected(device_error(0, name, "vfs", fmt::format("it offers {} VFs, not {}", *total, count)));
  }
  VFIOLAB_ASSIGN_OR_RETURN(const auto recorded, load_state(name));
  DeviceState state;
  if (recorded) {
    state = *recorded;
  } else {
    VFIOLAB_ASSIGN_OR_RETURN(state, record_state(sysfs, pf));
  }
  VFIOLAB_ASSIGN_OR_RETURN(const auto driver, about_device(sysfs.driver(pf), name, "vfs"));
  if (driver == "vfio-pci") {
    auto enabled = read_enable_sriov();
    if (!enabled) return std::unexpected(on_device(name, "vfs", enabled.error()));
    std::optional<bool> before;
    if (*enabled == false) {
      before = false;
    } else if (*enabled == true && !state.vfio_pci_enable_sriov) {
      // Another PF's state may say it was off before vfio-setup: this PF
      // relies on it too, and carries that on.
      auto inherited = recorded_enable_sriov(name);
      if (!inherited) return std::unexpected(on_device(name, "vfs", inherited.error()));
      before = *inherited;
    }
    if (before == false && !state.vfio_pci_enable_sriov) {
      state.vfio_pci_enable_sriov = false;
      if (auto written = write_state(state_file(name), serialize(state)); !written) {
        return std::unexpected(on_device(name, "vfs", written.error()));
      }
    }
    if (*enabled == false) {
      if (auto done = write_sysfs(kVfioPciEnableSriov, "Y"); !done) {
        return std::unexpected(on_device(name, "vfs", done.error()));
      }
      say("vfio-pci enable_sriov: N -> Y (restore turns it off again)");
    }
  }
  const fs::path file = sysfs.device_dir(pf) / "sriov_numvfs";
  VFIOLAB_ASSIGN_OR_RETURN(const auto numvfs, about_device(sysfs.sriov_numvfs(pf), name, "vfs"));
  const unsigned now = numvfs.value_or(0);
  Result<void> done;
  if (now != count && now > 0) done = write_sysfs(file, "0");
  if (done && now != count && count > 0) done = write_sysfs(file, std::to_string(count));
  if (!done) return std::unexpected(on_device(name, "vfs", done.error()));
  std::string vfs;
  for (unsigned i = 0; i < count; ++i) {
    VFIOLAB_ASSIGN_OR_RETURN(const auto vf, about_device(sysfs.sriov_vf(pf, i), name, "vfs"));
    if (!vf) return std::unexpected(device_error(0, name, "vfs", fmt::format("VF {} has no virtfn{} link", i, i)));
    VFIOLAB_ASSIGN_OR_RETURN(const auto vf_driver, about_device(sysfs.driver(*vf), vf->str(), "vfs"));
    vfs += fmt::format("{}{} on {}", vfs.empty() ? "" : ", ", vf->str(), driver_or_none(vf_driver));
  }
  say(fmt::format("{}: {} -> {} VFs{}{}", name, now, count, count ? ": " : "", vfs));
  return {};
}

int command_vfs(const std::vector<std::string>& args) {
  if (args.size() != 2) {
    say("usage: vfs PF COUNT (0 removes the VFs; restore puts the previous count back)");
    return kExitUsage;
  }
  if (auto root = require_root("vfs", "changing a PF's VFs writes to sysfs"); !root) {
    say(root.error());
    return kExitFailed;
  }
  auto count = parse_count(args[1], "vfs COUNT");
  if (!count) {
    say(count.error());
    return kExitUsage;
  }
  auto pf = present_device(Sysfs(), args[0]);
  if (!pf) {
    say(pf.error());
    return kExitFailed;
  }
  if (auto done = set_vfs(*pf, *count); !done) {
    say(done.error());
    return kExitFailed;
  }
  return kExitOk;
}

// Puts back a VF count that `run` changed on a PF held by an earlier bind:
// the count, that bind's state as it was, and enable_sriov when this run
// turned it on.
Result<void> undo_vfs(const DeviceState& before, unsigned count) {
  VFIOLAB_TRY(set_vfs(*parse_bdf(before.bdf), count));
  VFIOLAB_ASSIGN_OR_RETURN(const auto now, load_state(before.bdf));
  if (auto written = write_state(state_file(before.bdf), serialize(before)); !written) {
    return std::unexpected(on_device(before.bdf, "run --vfs", written.error()));
  }
  if (now && now->vfio_pci_enable_sriov && !before.vfio_pci_enable_sriov) {
    return restore_enable_sriov(*now);
  }
  return {};
}

}  // namespace vfiolab::setup
