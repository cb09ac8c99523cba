// What every vfio-setup command shares: how it speaks, its exit codes, the
// sysfs files it writes and the store of what it recorded (one state file
// per device, see state.h for their format).
#pragma once

#include "state.h"

#include "vfiolab/error.h"
#include "vfiolab/sysfs.h"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::setup {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr const char* kPciDevices = "/sys/bus/pci/devices";
// vfio-pci lets a PF's VF count change only while this is Y, in both
// directions (its sriov_configure answers ENOENT otherwise).
inline constexpr const char* kVfioPciEnableSriov = "/sys/module/vfio_pci/parameters/enable_sriov";

// "vfio-setup: TEXT" on stderr.
void say(const std::string& text);
void say(const Error& error);

std::filesystem::path state_dir();
std::filesystem::path state_file(const std::string& bdf);
std::filesystem::path hugepage_state_file();

// `text` without its trailing newlines and spaces.
std::string trimmed(std::string text);

// `cause` (a file or sysfs access) as the reason `operation` on device `bdf`
// failed. An errno stays the errno, so the message names it once, at the end.
Error on_device(const std::string& bdf, std::string operation, const Error& cause);

// A sysfs read (a Sysfs getter) whose error is the reason `operation` on
// device `bdf` failed.
template <typename T>
Result<T> about_device(Result<T> read, const std::string& bdf, const char* operation) {
  if (!read) return std::unexpected(on_device(bdf, operation, read.error()));
  return read;
}

// Writes one value to a sysfs attribute; the error names the value, the
// file and the errno.
Result<void> write_sysfs(const std::filesystem::path& path, std::string_view value);

// Atomic replace: a crash leaves the old file or the new one, never half.
Result<void> write_state(const std::filesystem::path& path, const std::string& content);

// A state file left behind would be acted on again by a later restore.
Result<void> remove_state(const std::filesystem::path& path);

std::string driver_or_none(const std::optional<std::string>& driver);

// What was recorded for the device: nullopt when nothing was, an error when
// the record cannot be read or trusted.
Result<std::optional<DeviceState>> load_state(const std::string& bdf);

// The devices that have a state file, sorted; none before the state
// directory exists.
Result<std::vector<std::string>> recorded_devices();

// Binding, restoring and reserving hugepages all write to sysfs.
Result<void> require_root(std::string operation, std::string_view why);

// A decimal count, surrounding whitespace allowed. No syscall behind it, so
// the error has no errno; `operation` says where the text came from.
Result<unsigned> parse_count(std::string_view text, std::string operation);

}  // namespace vfiolab::setup
