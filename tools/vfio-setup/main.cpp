// vfio-setup: bind PCI devices to vfio-pci, run tests on them, and always put
// them back.
//
//   vfio-setup bind BDF...               record each device's driver, move it to vfio-pci
//   vfio-setup restore [BDF...]          put back what was recorded (all when none named)
//   vfio-setup run [-d BDF [--vfs N]]... [-s] [-- CMD [ARG...]]
//                                        bind (and give a PF N VFs), run CMD (or a shell with -s) with
//                                        VFIO_SELFTESTS_BDF set and the BDFs appended,
//                                        restore on exit, SIGINT, SIGTERM or SIGHUP
//   vfio-setup vfs PF COUNT              enable COUNT SR-IOV VFs on PF (0 removes them);
//                                        restore puts the PF's previous count back
//   vfio-setup list                      PCI devices, drivers, IOMMU groups, what is held
//   vfio-setup hugepages [--2m N] [--1g N] | --release
//                                        reserve HugeTLB pages / give back the previous counts
//
// What was recorded lives in $VFIO_SETUP_STATE_DIR (default
// /run/vfiolab/vfio-setup), one sealed file per device, written before the
// device is touched: `restore` works after this tool was killed, even with
// SIGKILL. Exit status: 0 done, 1 refused or failed, 2 usage; `run` exits
// with CMD's status.
#include "state.h"

#include "vfiolab/sysfs.h"
#include "vfiolab/text.h"
#include "vfiolab/unique_fd.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using namespace vfiolab;
using namespace vfiolab::setup;
namespace fs = std::filesystem;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr const char* kPciDevices = "/sys/bus/pci/devices";
constexpr const char* kVfioPciDriver = "/sys/bus/pci/drivers/vfio-pci";
// vfio-pci lets a PF's VF count change only while this is Y, in both
// directions (its sriov_configure answers ENOENT otherwise).
constexpr const char* kVfioPciEnableSriov = "/sys/module/vfio_pci/parameters/enable_sriov";
// Drivers that may share an IOMMU group with a vfio-pci device: VFIO accepts
// them (they manage DMA ownership themselves or do no DMA).
const std::set<std::string> kGroupSafeDrivers = {"vfio-pci", "pci-stub", "pcieport"};

void say(const std::string& text) { fmt::print(stderr, "vfio-setup: {}\n", text); }
void say(const Error& error) { say(error.message()); }

fs::path state_dir() {
  const char* dir = std::getenv("VFIO_SETUP_STATE_DIR");
  return dir && *dir ? fs::path(dir) : fs::path("/run/vfiolab/vfio-setup");
}

fs::path state_file(const std::string& bdf) { return state_dir() / (bdf + ".state"); }
fs::path hugepage_state_file() { return state_dir() / "hugepages.state"; }

// A file's text; nullopt when it does not exist (a state file: nothing was
// recorded). Any other failure is an error, never "nothing recorded".
Result<std::optional<std::string>> read_if_present(const fs::path& path) {
  auto text = text::read_file(path);
  if (text) return std::optional<std::string>(std::move(*text));
  if (text.error().errnum == ENOENT) return std::optional<std::string>();
  return std::unexpected(text.error());
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// `cause` (a file or sysfs access) as the reason `operation` on device `bdf`
// failed. An errno stays the errno, so the message names it once, at the end.
Error on_device(const std::string& bdf, std::string operation, const Error& cause) {
  if (cause.errnum == 0) return device_error(0, bdf, std::move(operation), cause.message());
  std::string what = cause.context.empty() ? cause.operation : fmt::format("{} {}", cause.operation, cause.context);
  return device_error(cause.errnum, bdf, std::move(operation), std::move(what));
}

// Writes one value to a sysfs attribute; the error names the value, the
// file and the errno.
Result<void> write_sysfs(const fs::path& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd && ::write(fd.get(), value.data(), value.size()) == static_cast<ssize_t>(value.size())) return {};
  const int err = errno;
  return std::unexpected(make_error(err, fmt::format("writing '{}' to {}", trimmed(std::string(value)), path.string())));
}

// Atomic replace: a crash leaves the old file or the new one, never half.
Result<void> write_state(const fs::path& path, const std::string& content) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return std::unexpected(make_error(ec.value(), "cannot create " + path.parent_path().string()));
  fs::path temporary = path;
  temporary += ".tmp";
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) {
    const int err = errno;
    return std::unexpected(make_error(err, "cannot write " + temporary.string()));
  }
  if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()) ||
      ::fsync(fd.get()) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "cannot write " + temporary.string()));
  }
  fd.reset();
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "cannot write " + path.string()));
  }
  return {};
}

// A state file left behind would be acted on again by a later restore.
Result<void> remove_state(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return std::unexpected(make_error(ec.value(), "cannot remove " + path.string()));
  return {};
}

std::string driver_or_none(const std::optional<std::string>& driver) { return driver ? *driver : std::string("(none)"); }

// What was recorded for the device: nullopt when nothing was, an error when
// the record cannot be read or trusted.
Result<std::optional<DeviceState>> load_state(const std::string& bdf) {
  const fs::path file = state_file(bdf);
  auto text = read_if_present(file);
  if (!text) return std::unexpected(on_device(bdf, "load state", text.error()));
  if (!*text) return std::nullopt;
  auto state = parse_device_state(**text);
  if (!state) {
    return std::unexpected(device_error(
        0, bdf, "load state",
        fmt::format("state file {} is corrupt ({}); not trusting it: check the device by hand, then remove the file",
                    file.string(), state.error().context)));
  }
  if (state->bdf != bdf) {
    return std::unexpected(device_error(
        0, bdf, "load state", fmt::format("state file {} names {}; not trusting it", file.string(), state->bdf)));
  }
  return std::optional<DeviceState>(std::move(*state));
}

// The devices that have a state file, sorted; none before the state
// directory exists.
Result<std::vector<std::string>> recorded_devices() {
  const fs::path dir = state_dir();
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string file = it->path().filename().string();
    if (file.ends_with(".state") && file != hugepage_state_file().filename()) {
      names.push_back(file.substr(0, file.size() - 6));
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return std::unexpected(make_error(ec.value(), "cannot list " + dir.string()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Binding, restoring and reserving hugepages all write to sysfs.
Result<void> require_root(std::string operation, std::string_view why) {
  if (::geteuid() == 0) return {};
  return std::unexpected(make_error(0, std::move(operation), fmt::format("must run as root: {}", why)));
}

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

// The device `arg` names, when it is a BDF and the device is there.
Result<Bdf> present_device(const Sysfs& sysfs, const std::string& arg) {
  auto bdf = parse_bdf(arg);
  if (!bdf) return std::unexpected(bdf.error());
  if (!sysfs.exists(*bdf)) {
    return std::unexpected(device_error(
        0, bdf->str(), "bind", fmt::format("is no PCI device ({} does not exist)", sysfs.device_dir(*bdf).string())));
  }
  return *bdf;
}

// VFIO takes a whole IOMMU group: every other member must be named too, or
// be on a driver that can share the group.
Result<void> check_group(const Sysfs& sysfs, const Bdf& bdf, const std::vector<Bdf>& devices) {
  // Some IOMMU drivers (virtio-iommu) give a device its group only when a
  // driver probes it: without a group yet there is nothing to check, and
  // vfio-pci itself refuses a device that still has none.
  auto group = sysfs.iommu_group(bdf);
  if (!group) return {};
  std::string conflicts;
  for (const auto& member : sysfs.iommu_group_members(*group)) {
    if (std::find(devices.begin(), devices.end(), member) != devices.end()) continue;
    auto driver = sysfs.driver(member);
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

// Writes where the device is now to its state file, before anything about
// it changes: `restore` works even after this tool was killed.
Result<DeviceState> record_state(const Sysfs& sysfs, const Bdf& bdf) {
  DeviceState state;
  state.bdf = bdf.str();
  state.driver = sysfs.driver(bdf).value_or("");
  auto override_text = text::read_file(sysfs.device_dir(bdf) / "driver_override");
  if (!override_text) return std::unexpected(on_device(state.bdf, "record state", override_text.error()));
  // The kernel shows an unset override as "(null)".
  std::string override_value = trimmed(std::move(*override_text));
  state.driver_override = override_value == "(null)" ? "" : override_value;
  state.sriov_numvfs = sysfs.sriov_numvfs(bdf);
  if (auto written = write_state(state_file(state.bdf), serialize(state)); !written) {
    return std::unexpected(on_device(state.bdf, "record state", written.error()));
  }
  return state;
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
  auto now = sysfs.driver(bdf);
  auto group = sysfs.iommu_group(bdf);
  if (done && now == "vfio-pci") {
    say(fmt::format("{}: {} -> vfio-pci (IOMMU group {})", state.bdf, state.driver.empty() ? "(none)" : state.driver,
                    group ? std::to_string(*group) : "?"));
    return {};
  }
  Error error = done ? device_error(0, state.bdf, "bind to vfio-pci", "it ended up on " + driver_or_none(now))
                     : on_device(state.bdf, "bind to vfio-pci", done.error());
  if (!group) error.context += "; it has no IOMMU group: is an IOMMU enabled (intel_iommu=on, amd_iommu=on)?";
  return std::unexpected(std::move(error));
}

// vfio-pci's enable_sriov now; nullopt for a kernel without the parameter.
Result<std::optional<bool>> read_enable_sriov() {
  auto text = read_if_present(kVfioPciEnableSriov);
  if (!text) return std::unexpected(text.error());
  if (!*text) return std::optional<bool>();
  const std::string value = trimmed(**text);
  return std::optional<bool>(value == "Y" || value == "1");
}

// The value enable_sriov had before vfio-setup first turned it on, as some
// device's state still records it (other than `except`'s).
Result<std::optional<bool>> recorded_enable_sriov(const std::string& except) {
  auto names = recorded_devices();
  if (!names) return std::unexpected(names.error());
  for (const auto& name : *names) {
    if (name == except) continue;
    auto state = load_state(name);
    if (state && *state && (*state)->vfio_pci_enable_sriov) return (*state)->vfio_pci_enable_sriov;
  }
  return std::optional<bool>();
}

// Turns enable_sriov back off when this state turned it on and no other
// recorded PF still relies on it (its restore turns it off then).
Result<void> restore_enable_sriov(const DeviceState& state) {
  if (state.vfio_pci_enable_sriov != false) return {};
  auto others = recorded_enable_sriov(state.bdf);
  if (!others) return std::unexpected(others.error());
  if (*others) return {};
  if (auto done = write_sysfs(kVfioPciEnableSriov, "N"); !done) return std::unexpected(done.error());
  say(fmt::format("vfio-pci enable_sriov: Y -> N"));
  return {};
}

// Puts a device back where its state says it was, says so, and forgets the
// state. On an error the state file stays, for a later restore.
Result<void> restore_device(const DeviceState& state) {
  Sysfs sysfs;
  auto bdf = parse_bdf(state.bdf);
  if (!bdf) return std::unexpected(device_error(0, state.bdf, "restore", bdf.error().message()));
  const fs::path dir = sysfs.device_dir(*bdf);
  if (!sysfs.exists(*bdf)) {
    say(fmt::format("{}: the device is gone (hot-unplugged?); dropping its state", state.bdf));
    if (auto removed = remove_state(state_file(state.bdf)); !removed) {
      return std::unexpected(on_device(state.bdf, "restore", removed.error()));
    }
    return {};
  }
  auto before = sysfs.driver(*bdf);
  Result<void> done;
  // VFs that were not there go first, while the PF is still on the driver
  // that made them: the kernel changes a count only by way of 0.
  const auto vfs_now = sysfs.sriov_numvfs(*bdf);
  if (state.sriov_numvfs && vfs_now.value_or(0) > 0 && vfs_now != state.sriov_numvfs) {
    done = write_sysfs(dir / "sriov_numvfs", "0");
  }
  const std::optional<std::string> wanted =
      state.driver.empty() ? std::nullopt : std::optional<std::string>(state.driver);
  if (done && before && before != wanted) done = write_sysfs(dir / "driver" / "unbind", state.bdf);
  // An empty write clears driver_override.
  if (done) done = write_sysfs(dir / "driver_override", state.driver_override.empty() ? "\n" : state.driver_override);
  if (done && wanted && sysfs.driver(*bdf) != wanted) {
    // A refused bind falls back to a probe; the check below judges both.
    if (!write_sysfs(fs::path("/sys/bus/pci/drivers") / *wanted / "bind", state.bdf)) {
      (void)write_sysfs("/sys/bus/pci/drivers_probe", state.bdf);
    }
  }
  if (!done) return std::unexpected(on_device(state.bdf, "restore", done.error()));
  auto after = sysfs.driver(*bdf);
  if (after != wanted) {
    return std::unexpected(device_error(
        0, state.bdf, "restore", fmt::format("it is on {}, not {}", driver_or_none(after), driver_or_none(wanted))));
  }
  if (state.sriov_numvfs.value_or(0) > 0 && sysfs.sriov_numvfs(*bdf) != state.sriov_numvfs) {
    if (auto vfs = write_sysfs(dir / "sriov_numvfs", std::to_string(*state.sriov_numvfs)); !vfs) {
      return std::unexpected(on_device(state.bdf, "restore", vfs.error()));
    }
  }
  if (state.sriov_numvfs && sysfs.sriov_numvfs(*bdf) != state.sriov_numvfs) {
    return std::unexpected(device_error(0, state.bdf, "restore",
                                        fmt::format("it has {} VFs, not {}", sysfs.sriov_numvfs(*bdf).value_or(0),
                                                    *state.sriov_numvfs)));
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

int command_bind(const std::vector<std::string>& args, std::vector<std::string>* held = nullptr) {
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

Result<unsigned> parse_count(std::string_view text, std::string operation);
Result<void> set_vfs(const Bdf& pf, unsigned count);

// Puts back a VF count that `run` changed on a PF held by an earlier bind:
// the count, that bind's state as it was, and enable_sriov when this run
// turned it on.
Result<void> undo_vfs(const DeviceState& before, unsigned count) {
  if (auto done = set_vfs(*parse_bdf(before.bdf), count); !done) return done;
  auto now = load_state(before.bdf);
  if (!now) return std::unexpected(now.error());
  if (auto written = write_state(state_file(before.bdf), serialize(before)); !written) {
    return std::unexpected(on_device(before.bdf, "run --vfs", written.error()));
  }
  if (*now && (*now)->vfio_pci_enable_sriov && !before.vfio_pci_enable_sriov) {
    return restore_enable_sriov(**now);
  }
  return {};
}

volatile sig_atomic_t g_signal = 0;
void remember_signal(int signal) { g_signal = signal; }

int command_run(const std::vector<std::string>& args) {
  std::vector<std::string> bdfs;
  std::vector<std::pair<std::string, unsigned>> vfs;  // --vfs N for the -d before it
  std::vector<std::string> command;
  bool shell = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-d" && i + 1 < args.size()) {
      bdfs.push_back(args[++i]);
    } else if (args[i] == "--vfs" && i + 1 < args.size() && !bdfs.empty()) {
      auto count = parse_count(args[++i], "run --vfs");
      if (!count) {
        say(count.error());
        return kExitUsage;
      }
      vfs.emplace_back(bdfs.back(), *count);
    } else if (args[i] == "-s") {
      shell = true;
    } else if (args[i] == "--") {
      command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    } else {
      say(fmt::format("run: unexpected '{}' (usage: run [-d BDF [--vfs N]]... [-s] [-- CMD...])", args[i]));
      return kExitUsage;
    }
  }
  if (bdfs.empty() || (command.empty() && !shell)) {
    say("run: name devices with -d BDF and give -- CMD or -s");
    return kExitUsage;
  }

  // Signals are caught before binding so a Ctrl-C at any point still ends in
  // a restore.
  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaction(signal, &action, nullptr);

  std::vector<std::string> held;
  int bound = command_bind(bdfs, &held);
  // VF counts this run changed on PFs an earlier bind holds: their restore
  // is that bind's, so this run puts its own change back itself.
  std::vector<std::pair<DeviceState, unsigned>> vfs_undo;
  auto restore_held = [&] {
    int status = held.empty() ? kExitOk : command_restore(held);
    for (const auto& [before, count] : vfs_undo) {
      if (auto undone = undo_vfs(before, count); !undone) {
        say(undone.error());
        status = kExitFailed;
      }
    }
    return status;
  };
  for (const auto& [pf, count] : vfs) {
    if (bound != kExitOk || g_signal) break;
    // Bound above, so its state is recorded: either this run's (restore puts
    // the VFs back with the driver) or an earlier bind's.
    const std::string name = parse_bdf(pf)->str();
    if (std::find(held.begin(), held.end(), name) == held.end()) {
      auto before = load_state(name);
      if (!before || !*before) {
        say(before ? device_error(0, name, "run --vfs", "its state file is gone") : before.error());
        bound = kExitFailed;
        break;
      }
      vfs_undo.emplace_back(**before, Sysfs().sriov_numvfs(*parse_bdf(name)).value_or(0));
    }
    if (auto done = set_vfs(*parse_bdf(pf), count); !done) {
      say(done.error());
      bound = kExitFailed;
    }
  }
  if (bound != kExitOk || g_signal) {
    // A signal during binding: CMD never ran; report the signal as a shell would.
    restore_held();
    return bound != kExitOk ? bound : 128 + g_signal;
  }
  std::vector<std::string> canonical;
  for (const auto& b : bdfs) canonical.push_back(parse_bdf(b)->str());  // the bind parsed them all

  std::vector<std::string> argv_strings;
  if (shell) {
    const char* user_shell = std::getenv("SHELL");
    argv_strings.push_back(user_shell && *user_shell ? user_shell : "/bin/sh");
    say(fmt::format("devices on vfio-pci, VFIO_SELFTESTS_BDF={}; exit the shell to restore them", canonical[0]));
  } else {
    argv_strings = command;
    argv_strings.insert(argv_strings.end(), canonical.begin(), canonical.end());
  }
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_t child = ::fork();
  if (child < 0) {
    const int err = errno;
    say(make_error(err, "fork"));
    restore_held();
    return kExitFailed;
  }
  if (child == 0) {
    struct sigaction reset {};
    reset.sa_handler = SIG_DFL;
    for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaction(signal, &reset, nullptr);
    ::setenv("VFIO_SELFTESTS_BDF", canonical[0].c_str(), 1);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    say(make_error(err, fmt::format("cannot run '{}'", argv[0])));
    ::_exit(127);
  }

  int status = 0;
  bool lost_child = false;
  bool forwarded = false;
  auto killed_at = std::chrono::steady_clock::time_point::max();
  for (;;) {
    pid_t waited = ::waitpid(child, &status, g_signal ? WNOHANG : 0);
    if (waited == child) break;
    if (waited < 0) {
      const int err = errno;
      if (err != EINTR) {
        // CMD's status is unknown: the run cannot pass.
        say(make_error(err, "waitpid", fmt::format("CMD pid {}", child)));
        lost_child = true;
        break;
      }
    }
    if (g_signal && !forwarded) {
      // The child may not share our terminal's process group: pass it on,
      // and insist after a grace period (an interactive shell ignores TERM).
      ::kill(child, g_signal);
      forwarded = true;
      killed_at = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    }
    if (forwarded && std::chrono::steady_clock::now() > killed_at) ::kill(child, SIGKILL);
    if (g_signal) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int child_status = lost_child             ? kExitFailed
                     : WIFEXITED(status)    ? WEXITSTATUS(status)
                                            : 128 + WTERMSIG(status);
  if (g_signal) say(fmt::format("caught signal {}; restoring", static_cast<int>(g_signal)));
  int restored = restore_held();
  if (restored != kExitOk && child_status == 0) return kExitFailed;
  return child_status;
}

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
    auto group = sysfs.iommu_group(bdf);
    std::string held;
    if (auto recorded = load_state(bdf.str()); !recorded) {
      // State files are root's: one a user cannot read is not known to be corrupt.
      held = recorded.error().errnum != 0 ? "STATE FILE UNREADABLE" : "CORRUPT STATE FILE";
    } else if (const auto& state = *recorded) {
      held = fmt::format("held (was on {})", state->driver.empty() ? "no driver" : state->driver);
    }
    fmt::print("{:<13} {:04x}:{:04x} {:<12} {:>5}  {}\n", bdf.str(), sysfs.vendor(bdf).value_or(0),
               sysfs.device_id(bdf).value_or(0), driver_or_none(sysfs.driver(bdf)),
               group ? std::to_string(*group) : "-", held);
  }
  return kExitOk;
}

fs::path nr_hugepages(unsigned kib) {
  return fs::path(fmt::format("/sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages", kib));
}

// A decimal count, surrounding whitespace allowed. No syscall behind it, so
// the error has no errno; `operation` says where the text came from.
Result<unsigned> parse_count(std::string_view text, std::string operation) {
  text = text::trim(text);
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return std::unexpected(make_error(0, std::move(operation), fmt::format("'{}' is not a count", text)));
  }
  return value;
}

// The pages in the pool of `kib` pages now; nullopt when the kernel has no
// such pool.
Result<std::optional<unsigned>> pool_pages(unsigned kib) {
  const fs::path file = nr_hugepages(kib);
  auto text = read_if_present(file);
  if (!text) return std::unexpected(text.error());
  if (!*text) return std::optional<unsigned>();
  auto count = parse_count(**text, "read " + file.string());
  if (!count) return std::unexpected(count.error());
  return std::optional<unsigned>(*count);
}

int command_hugepages(const std::vector<std::string>& args) {
  if (auto root = require_root("hugepages", "reserving hugepages writes to sysfs"); !root) {
    say(root.error());
    return kExitFailed;
  }
  constexpr const char* kUsage = "usage: hugepages [--2m N] [--1g N] | hugepages --release";
  unsigned want_2m = 16, want_1g = 1;
  bool release = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--release") {
      release = true;
    } else if ((args[i] == "--2m" || args[i] == "--1g") && i + 1 < args.size()) {
      auto count = parse_count(args[i + 1], "hugepages " + args[i]);
      if (!count) {
        say(count.error());
        say(kUsage);
        return kExitUsage;
      }
      (args[i] == "--2m" ? want_2m : want_1g) = *count;
      ++i;
    } else {
      say(kUsage);
      return kExitUsage;
    }
  }
  auto pool_2m = pool_pages(2048);
  if (!pool_2m) {
    say(pool_2m.error());
    return kExitFailed;
  }
  auto pool_1g = pool_pages(1048576);
  if (!pool_1g) {
    say(pool_1g.error());
    return kExitFailed;
  }
  const std::optional<unsigned> now_2m = *pool_2m;
  const std::optional<unsigned> now_1g = *pool_1g;
  const fs::path state_path = hugepage_state_file();

  if (release) {
    auto text = read_if_present(state_path);
    if (!text) {
      say(text.error());
      return kExitFailed;
    }
    if (!*text) {
      say("hugepages: nothing recorded; counts left as they are");
      return kExitOk;
    }
    auto state = parse_hugepage_state(**text);
    if (!state) {
      say(make_error(0, "hugepages --release",
                     fmt::format("{} is corrupt ({}); not trusting it", state_path.string(), state.error().context)));
      return kExitFailed;
    }
    Result<void> done;
    if (now_2m) done = write_sysfs(nr_hugepages(2048), std::to_string(state->pages_2m));
    if (done && now_1g) done = write_sysfs(nr_hugepages(1048576), std::to_string(state->pages_1g));
    if (done) done = remove_state(state_path);
    if (!done) {
      say(done.error());
      return kExitFailed;
    }
    say(fmt::format("hugepages: back to {} x 2 MiB, {} x 1 GiB", state->pages_2m, state->pages_1g));
    return kExitOk;
  }

  if (!now_2m) {
    say("hugepages: this kernel has no 2 MiB HugeTLB pages (CONFIG_HUGETLBFS off?)");
    return kExitFailed;
  }
  // Keep the first recorded counts: a second reserve must not make the
  // reserved counts look like the original ones.
  std::error_code ec;
  const bool recorded = fs::exists(state_path, ec);
  if (ec) {
    say(make_error(ec.value(), "cannot check " + state_path.string()));
    return kExitFailed;
  }
  if (!recorded) {
    HugepageState previous{*now_2m, now_1g.value_or(0)};
    if (auto written = write_state(state_path, serialize(previous)); !written) {
      say(written.error());
      return kExitFailed;
    }
  }
  Result<void> done = write_sysfs(nr_hugepages(2048), std::to_string(std::max(want_2m, *now_2m)));
  if (done && now_1g && want_1g > *now_1g) done = write_sysfs(nr_hugepages(1048576), std::to_string(want_1g));
  // A count that cannot be read back counts as nothing reserved.
  auto pages_now = [](unsigned kib) {
    auto pages = pool_pages(kib);
    return pages && *pages ? **pages : 0u;
  };
  auto got_2m = pages_now(2048);
  auto got_1g = pages_now(1048576);
  say(fmt::format("hugepages: {} x 2 MiB (asked {}), {} x 1 GiB (asked {}){}", got_2m, want_2m, got_1g, want_1g,
                  now_1g ? "" : "; no 1 GiB pages on this machine"));
  if (!done) say(done.error());
  if (!done || got_2m < want_2m || (now_1g && got_1g < want_1g)) {
    say("hugepages: fewer pages than asked (memory too fragmented? reserve them on the kernel command line)");
    return kExitFailed;
  }
  return kExitOk;
}

// Gives a PF `count` VFs (0: none). The PF's state is recorded first when
// nothing is yet, so `restore` puts its previous count back; a PF on
// vfio-pci needs vfio-pci's enable_sriov, which is turned on and recorded
// in the same state to be turned off again.
Result<void> set_vfs(const Bdf& pf, unsigned count) {
  Sysfs sysfs;
  const std::string name = pf.str();
  const auto total = sysfs.sriov_totalvfs(pf);
  if (!total || *total == 0) {
    return std::unexpected(device_error(0, name, "vfs", "the device has no SR-IOV (no sriov_totalvfs, or 0)"));
  }
  if (count > *total) {
    return std::unexpected(device_error(0, name, "vfs", fmt::format("it offers {} VFs, not {}", *total, count)));
  }
  auto recorded = load_state(name);
  if (!recorded) return std::unexpected(recorded.error());
  DeviceState state;
  if (*recorded) {
    state = **recorded;
  } else {
    auto written = record_state(sysfs, pf);
    if (!written) return std::unexpected(written.error());
    state = *written;
  }
  if (sysfs.driver(pf) == "vfio-pci") {
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
  const unsigned now = sysfs.sriov_numvfs(pf).value_or(0);
  Result<void> done;
  if (now != count && now > 0) done = write_sysfs(file, "0");
  if (done && now != count && count > 0) done = write_sysfs(file, std::to_string(count));
  if (!done) return std::unexpected(on_device(name, "vfs", done.error()));
  std::string vfs;
  for (unsigned i = 0; i < count; ++i) {
    auto vf = sysfs.sriov_vf(pf, i);
    if (!vf) return std::unexpected(device_error(0, name, "vfs", fmt::format("VF {} has no virtfn{} link", i, i)));
    vfs += fmt::format("{}{} on {}", vfs.empty() ? "" : ", ", vf->str(), driver_or_none(sysfs.driver(*vf)));
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

int usage() {
  fmt::print(stderr,
             "usage: vfio-setup bind BDF...\n"
             "       vfio-setup restore [BDF...]\n"
             "       vfio-setup run [-d BDF [--vfs N]]... [-s] [-- CMD [ARG...]]\n"
             "       vfio-setup vfs PF COUNT\n"
             "       vfio-setup list\n"
             "       vfio-setup hugepages [--2m N] [--1g N] | --release\n"
             "state: $VFIO_SETUP_STATE_DIR (default /run/vfiolab/vfio-setup)\n");
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "bind") return command_bind(args);
  if (command == "restore") return command_restore(args);
  if (command == "run") return command_run(args);
  if (command == "vfs") return command_vfs(args);
  if (command == "list") return command_list();
  if (command == "hugepages") return command_hugepages(args);
  return usage();
}
