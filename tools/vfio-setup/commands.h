// vfio-setup's commands (main.cpp picks one by its first argument), and the
// steps one command borrows from another's file: run binds, sets VFs and
// restores; vfs records a state as bind does; restore turns off what vfs
// turned on. Each returns the tool's exit status (common.h).
#pragma once

#include "state.h"

#include "vfiolab/error.h"
#include "vfiolab/sysfs.h"

#include <string>
#include <vector>

namespace vfiolab::setup {

// bind.cpp. `held` gets the devices this bind moved to vfio-pci.
int command_bind(const std::vector<std::string>& args, std::vector<std::string>* held = nullptr);
// The device `arg` names, when it is a BDF and the device is there.
Result<Bdf> present_device(const Sysfs& sysfs, const std::string& arg);
// Writes where the device is now to its state file, before anything about
// it changes: `restore` works even after this tool was killed.
Result<DeviceState> record_state(const Sysfs& sysfs, const Bdf& bdf);

// restore.cpp.
int command_restore(const std::vector<std::string>& args);
// Puts a device back where its state says it was, says so, and forgets the
// state. On an error the state file stays, for a later restore.
Result<void> restore_device(const DeviceState& state);
void report_restore_failure(const DeviceState& state, const Error& error);

// vfs.cpp.
int command_vfs(const std::vector<std::string>& args);
// Gives a PF `count` VFs (0: none); see vfs.cpp.
Result<void> set_vfs(const Bdf& pf, unsigned count);
// Puts back a VF count that `run` changed on a PF held by an earlier bind.
Result<void> undo_vfs(const DeviceState& before, unsigned count);
// Turns enable_sriov back off when this state turned it on and no other
// recorded PF still relies on it.
Result<void> restore_enable_sriov(const DeviceState& state);

// run.cpp, list.cpp, hugepages.cpp.
int command_run(const std::vector<std::string>& args);
int command_list();
int command_hugepages(const std::vector<std::string>& args);

}  // namespace vfiolab::setup
