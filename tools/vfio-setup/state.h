// What vfio-setup records before it touches a device, so the binding can be
// put back after a crash or a SIGKILL. One small text file per device,
// written atomically and sealed with a checksum: a torn or edited file is
// reported as corrupt, never trusted.
#pragma once

#include "vfiolab/error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vfiolab::setup {

struct DeviceState {
  std::string bdf;              // "0000:00:06.0"
  std::string driver;           // the driver it was on; empty for none
  std::string driver_override;  // its previous driver_override; empty for none
  std::optional<unsigned> sriov_numvfs;  // VFs enabled before; absent without SR-IOV
  // vfio-pci's enable_sriov parameter (global) as it was before vfio-setup
  // turned it on to change this PF's VFs; absent when it did not.
  std::optional<bool> vfio_pci_enable_sriov;
};

std::string serialize(const DeviceState& state);
// The error has no errno (no syscall behind it); its context names what is
// wrong (missing header, bad checksum, missing or unknown key, bad value).
Result<DeviceState> parse_device_state(std::string_view text);

struct HugepageState {
  unsigned pages_2m = 0;  // nr_hugepages before vfio-setup changed it
  unsigned pages_1g = 0;
};

std::string serialize(const HugepageState& state);
Result<HugepageState> parse_hugepage_state(std::string_view text);

// FNV-1a, 64 bits: a seal against torn writes and hand edits, not a defence
// against an attacker who can write root's state directory.
std::uint64_t checksum(std::string_view text);

}  // namespace vfiolab::setup
