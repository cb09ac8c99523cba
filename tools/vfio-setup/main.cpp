// vfio-setup: bind PCI devices to vfio-pci, run tests on them, and always put
// them back.
//
//   vfio-setup bind BDF...               record each device's driver, move it to vfio-pci
//   vfio-setup restore [BDF...]          put back what was recorded (all when none named)
//   vfio-setup run [-d BDF]... [-s] [-- CMD [ARG...]]
//                                        bind, run CMD (or a shell with -s) with
//                                        VFIO_SELFTESTS_BDF set and the BDFs appended,
//                                        restore on exit, SIGINT, SIGTERM or SIGHUP
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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
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
// Drivers that may share an IOMMU group with a vfio-pci device: VFIO accepts
// them (they manage DMA ownership themselves or do no DMA).
const std::set<std::string> kGroupSafeDrivers = {"vfio-pci", "pci-stub", "pcieport"};

void say(const std::string& text) { fmt::print(stderr, "vfio-setup: {}\n", text); }

fs::path state_dir() {
  const char* dir = std::getenv("VFIO_SETUP_STATE_DIR");
  return dir && *dir ? fs::path(dir) : fs::path("/run/vfiolab/vfio-setup");
}

fs::path state_file(const std::string& bdf) { return state_dir() / (bdf + ".state"); }
fs::path hugepage_state_file() { return state_dir() / "hugepages.state"; }

// A file's text; nullopt when it cannot be read (absent, for the state files).
std::optional<std::string> read_text(const fs::path& path) {
  auto text = text::read_file(path);
  if (!text) return std::nullopt;
  return std::move(*text);
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
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

std::string driver_or_none(const std::optional<std::string>& driver) { return driver ? *driver : std::string("(none)"); }

// What was recorded for the device: nullopt when nothing was, an error when
// the record cannot be trusted.
Result<std::optional<DeviceState>> load_state(const std::string& bdf) {
  auto text = read_text(state_file(bdf));
  if (!text) return std::nullopt;
  auto state = parse_device_state(*text);
  if (!state) {
    return std::unexpected(make_error(
        0, fmt::format("state file {} is corrupt ({}); not trusting it: check {} by hand, then remove the file",
                       state_file(bdf).string(), state.error().context, bdf)));
  }
  if (state->bdf != bdf) {
    return std::unexpected(make_error(
        0, fmt::format("state file {} names {}, not {}; not trusting it", state_file(bdf).string(), state->bdf, bdf)));
  }
  return std::optional<DeviceState>(std::move(*state));
}

bool vfio_pci_available() {
  if (fs::exists(kVfioPciDriver)) return true;
  // A modular kernel: try to load it, quietly.
  pid_t pid = 0;
  const char* argv[] = {"modprobe", "-q", "vfio-pci", nullptr};
  if (::posix_spawnp(&pid, "modprobe", nullptr, nullptr, const_cast<char* const*>(argv), environ) == 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  return fs::exists(kVfioPciDriver);
}

// Everything that could make `bind` refuse, checked before any change.
bool preflight(const std::vector<std::string>& args, std::vector<Bdf>& devices) {
  if (::geteuid() != 0) {
    say("must run as root: binding devices writes to sysfs");
    return false;
  }
  Sysfs sysfs;
  bool ok = true;
  for (const auto& arg : args) {
    auto bdf = parse_bdf(arg);
    if (!bdf) {
      say(bdf.error().message());
      ok = false;
    } else if (!sysfs.exists(*bdf)) {
      say(fmt::format("no PCI device {} ({} does not exist)", bdf->str(), sysfs.device_dir(*bdf).string()));
      ok = false;
    } else if (std::find(devices.begin(), devices.end(), *bdf) == devices.end()) {
      devices.push_back(*bdf);
    }
  }
  if (!ok) return false;
  if (!vfio_pci_available()) {
    say("vfio-pci is not available: the kernel has no CONFIG_VFIO_PCI and 'modprobe vfio-pci' did not load it");
    return false;
  }
  for (const auto& bdf : devices) {
    if (auto recorded = load_state(bdf.str()); !recorded) {
      say(recorded.error().message());
      ok = false;
    }
    // Some IOMMU drivers (virtio-iommu) give a device its group only when a
    // driver probes it: without a group yet there is nothing to check, and
    // vfio-pci itself refuses a device that still has none.
    auto group = sysfs.iommu_group(bdf);
    if (!group) continue;
    std::vector<std::string> conflicts;
    for (const auto& member : sysfs.iommu_group_members(*group)) {
      if (std::find(devices.begin(), devices.end(), member) != devices.end()) continue;
      auto driver = sysfs.driver(member);
      if (driver && !kGroupSafeDrivers.contains(*driver)) conflicts.push_back(fmt::format("{} ({})", member.str(), *driver));
    }
    if (!conflicts.empty()) {
      std::string list;
      for (const auto& c : conflicts) list += (list.empty() ? "" : ", ") + c;
      say(fmt::format("refusing to bind {}: IOMMU group {} also holds devices on host drivers: {}. "
                      "Name them too, or unbind them first.",
                      bdf.str(), *group, list));
      ok = false;
    }
  }
  return ok;
}

bool restore_device(const DeviceState& state);

// Moves one device to vfio-pci after recording where it was. Returns false
// (after putting it back) when the device did not end up on vfio-pci.
bool bind_device(const Bdf& bdf, bool& newly_held) {
  Sysfs sysfs;
  const std::string name = bdf.str();
  const fs::path dir = sysfs.device_dir(bdf);
  auto driver = sysfs.driver(bdf);
  newly_held = false;

  if (auto recorded = load_state(name); recorded && *recorded) {
    if (driver == "vfio-pci") {
      say(fmt::format("{}: already held on vfio-pci", name));
      return true;
    }
  }
  DeviceState state;
  state.bdf = name;
  state.driver = driver.value_or("");
  std::string override_text = trimmed(read_text(dir / "driver_override").value_or(""));
  state.driver_override = override_text == "(null)" ? "" : override_text;
  state.sriov_numvfs = sysfs.sriov_numvfs(bdf);
  if (auto written = write_state(state_file(name), serialize(state)); !written) {
    say(fmt::format("{}: {}; device left as it was", name, written.error().message()));
    return false;
  }
  newly_held = true;

  Result<void> done;
  if (state.sriov_numvfs.value_or(0) > 0) done = write_sysfs(dir / "sriov_numvfs", "0");
  if (done && driver && *driver != "vfio-pci") done = write_sysfs(dir / "driver" / "unbind", name);
  if (done) done = write_sysfs(dir / "driver_override", "vfio-pci");
  if (done && sysfs.driver(bdf) != "vfio-pci") {
    // drivers_probe reports an error when no driver takes the device; the
    // check below says what happened.
    (void)write_sysfs("/sys/bus/pci/drivers_probe", name);
  }
  auto now = sysfs.driver(bdf);
  if (!done || now != "vfio-pci") {
    std::string why = done ? "now on " + driver_or_none(now) : done.error().message();
    if (!sysfs.iommu_group(bdf)) why += "; it has no IOMMU group: is an IOMMU enabled (intel_iommu=on, amd_iommu=on)?";
    say(fmt::format("{}: did not reach vfio-pci ({}); putting it back", name, why));
    restore_device(state);
    return false;
  }
  auto group = sysfs.iommu_group(bdf);
  say(fmt::format("{}: {} -> vfio-pci (IOMMU group {})", name, driver_or_none(driver),
                  group ? std::to_string(*group) : "?"));
  return true;
}

bool restore_device(const DeviceState& state) {
  Sysfs sysfs;
  auto bdf = parse_bdf(state.bdf);
  if (!bdf) {
    say(fmt::format("state for '{}': {}", state.bdf, bdf.error().message()));
    return false;
  }
  const fs::path dir = sysfs.device_dir(*bdf);
  if (!sysfs.exists(*bdf)) {
    say(fmt::format("{}: the device is gone (hot-unplugged?); dropping its state", state.bdf));
    std::error_code ec;
    fs::remove(state_file(state.bdf), ec);
    return true;
  }
  auto before = sysfs.driver(*bdf);
  Result<void> done;
  const std::optional<std::string> wanted =
      state.driver.empty() ? std::nullopt : std::optional<std::string>(state.driver);
  if (before && before != wanted) done = write_sysfs(dir / "driver" / "unbind", state.bdf);
  // An empty write clears driver_override.
  if (done) done = write_sysfs(dir / "driver_override", state.driver_override.empty() ? "\n" : state.driver_override);
  if (done && wanted && sysfs.driver(*bdf) != wanted) {
    // A refused bind falls back to a probe; the check below judges both.
    if (!write_sysfs(fs::path("/sys/bus/pci/drivers") / *wanted / "bind", state.bdf)) {
      (void)write_sysfs("/sys/bus/pci/drivers_probe", state.bdf);
    }
  }
  auto after = sysfs.driver(*bdf);
  if (done && after != wanted) {
    done = std::unexpected(
        make_error(0, fmt::format("it is on {}, not {}", driver_or_none(after), driver_or_none(wanted))));
  }
  if (done && state.sriov_numvfs.value_or(0) > 0) {
    done = write_sysfs(dir / "sriov_numvfs", std::to_string(*state.sriov_numvfs));
  }
  if (!done) {
    say(fmt::format("{}: restore failed: {}; state kept in {}", state.bdf, done.error().message(),
                    state_file(state.bdf).string()));
    return false;
  }
  std::error_code ec;
  fs::remove(state_file(state.bdf), ec);
  say(fmt::format("{}: {} -> {}", state.bdf, driver_or_none(before), driver_or_none(after)));
  return true;
}

int command_bind(const std::vector<std::string>& args, std::vector<std::string>* held = nullptr) {
  if (args.empty()) {
    say("bind: name at least one BDF");
    return kExitUsage;
  }
  std::vector<Bdf> devices;
  if (!preflight(args, devices)) return kExitFailed;
  bool ok = true;
  for (const auto& bdf : devices) {
    bool newly_held = false;
    if (!bind_device(bdf, newly_held)) {
      ok = false;
    } else if (held && newly_held) {
      held->push_back(bdf.str());
    }
  }
  return ok ? kExitOk : kExitFailed;
}

int command_restore(const std::vector<std::string>& args) {
  if (::geteuid() != 0) {
    say("must run as root: restoring devices writes to sysfs");
    return kExitFailed;
  }
  std::vector<std::string> names;
  for (const auto& arg : args) {
    auto bdf = parse_bdf(arg);
    if (!bdf) {
      say(bdf.error().message());
      return kExitFailed;
    }
    names.push_back(bdf->str());
  }
  if (names.empty()) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(state_dir(), ec)) {
      std::string file = entry.path().filename().string();
      if (file.ends_with(".state") && file != hugepage_state_file().filename()) {
        names.push_back(file.substr(0, file.size() - 6));
      }
    }
    std::sort(names.begin(), names.end());
  }
  bool ok = true;
  int restored = 0;
  for (const auto& name : names) {
    auto recorded = load_state(name);
    if (!recorded || !*recorded) {
      if (!recorded) {
        say(recorded.error().message());
        ok = false;
      } else if (!args.empty()) {
        say(fmt::format("{}: nothing recorded; left as it is", name));
      }
      continue;
    }
    if (restore_device(**recorded)) {
      ++restored;
    } else {
      ok = false;
    }
  }
  if (restored == 0 && ok) say("nothing to restore");
  return ok ? kExitOk : kExitFailed;
}

volatile sig_atomic_t g_signal = 0;
void remember_signal(int signal) { g_signal = signal; }

int command_run(const std::vector<std::string>& args) {
  std::vector<std::string> bdfs;
  std::vector<std::string> command;
  bool shell = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-d" && i + 1 < args.size()) {
      bdfs.push_back(args[++i]);
    } else if (args[i] == "-s") {
      shell = true;
    } else if (args[i] == "--") {
      command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    } else {
      say(fmt::format("run: unexpected '{}' (usage: run [-d BDF]... [-s] [-- CMD...])", args[i]));
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
  std::vector<std::string> canonical;
  for (const auto& b : bdfs) canonical.push_back(parse_bdf(b)->str());  // preflight parsed them all
  auto restore_held = [&] {
    return held.empty() ? kExitOk : command_restore(held);
  };
  if (bound != kExitOk || g_signal) {
    // A signal during binding: CMD never ran; report the signal as a shell would.
    restore_held();
    return bound != kExitOk ? bound : 128 + g_signal;
  }

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
    say(fmt::format("fork: {}", std::strerror(errno)));
    restore_held();
    return kExitFailed;
  }
  if (child == 0) {
    struct sigaction reset {};
    reset.sa_handler = SIG_DFL;
    for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaction(signal, &reset, nullptr);
    ::setenv("VFIO_SELFTESTS_BDF", canonical[0].c_str(), 1);
    ::execvp(argv[0], argv.data());
    fmt::print(stderr, "vfio-setup: cannot run '{}': {}\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }

  int status = 0;
  bool forwarded = false;
  auto killed_at = std::chrono::steady_clock::time_point::max();
  for (;;) {
    pid_t done = ::waitpid(child, &status, g_signal ? WNOHANG : 0);
    if (done == child) break;
    if (done < 0 && errno != EINTR) break;
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
  int child_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (g_signal) say(fmt::format("caught signal {}; restoring", static_cast<int>(g_signal)));
  int restored = restore_held();
  if (restored != kExitOk && child_status == 0) return kExitFailed;
  return child_status;
}

int command_list() {
  Sysfs sysfs;
  std::vector<Bdf> devices;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kPciDevices, ec)) {
    if (auto bdf = parse_bdf(entry.path().filename().string())) devices.push_back(*bdf);
  }
  std::sort(devices.begin(), devices.end());
  fmt::print("{:<13} {:<9} {:<12} {:>5}  {}\n", "device", "id", "driver", "group", "vfio-setup");
  for (const auto& bdf : devices) {
    auto group = sysfs.iommu_group(bdf);
    std::string held;
    if (auto recorded = load_state(bdf.str()); !recorded) {
      held = "CORRUPT STATE FILE";
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

// A decimal count, surrounding whitespace allowed; nullopt for anything else.
std::optional<unsigned> parse_count(std::string_view text) {
  text = text::trim(text);
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<unsigned> read_count(const fs::path& path) {
  auto text = read_text(path);
  if (!text) return std::nullopt;
  return parse_count(*text);
}

int command_hugepages(const std::vector<std::string>& args) {
  if (::geteuid() != 0) {
    say("must run as root: reserving hugepages writes to sysfs");
    return kExitFailed;
  }
  unsigned want_2m = 16, want_1g = 1;
  bool release = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto count = [&]() -> std::optional<unsigned> {
      if (i + 1 >= args.size()) return std::nullopt;
      return parse_count(args[++i]);
    };
    std::optional<unsigned> value;
    if (args[i] == "--release") {
      release = true;
      continue;
    } else if (args[i] == "--2m" && (value = count())) {
      want_2m = *value;
    } else if (args[i] == "--1g" && (value = count())) {
      want_1g = *value;
    } else {
      say("usage: hugepages [--2m N] [--1g N] | hugepages --release");
      return kExitUsage;
    }
  }
  auto now_2m = read_count(nr_hugepages(2048));
  auto now_1g = read_count(nr_hugepages(1048576));

  if (release) {
    auto text = read_text(hugepage_state_file());
    if (!text) {
      say("hugepages: nothing recorded; counts left as they are");
      return kExitOk;
    }
    auto state = parse_hugepage_state(*text);
    if (!state) {
      say(fmt::format("{} is corrupt ({}); not trusting it", hugepage_state_file().string(), state.error().context));
      return kExitFailed;
    }
    Result<void> done;
    if (now_2m) done = write_sysfs(nr_hugepages(2048), std::to_string(state->pages_2m));
    if (done && now_1g) done = write_sysfs(nr_hugepages(1048576), std::to_string(state->pages_1g));
    if (!done) {
      say(done.error().message());
      return kExitFailed;
    }
    std::error_code ec;
    fs::remove(hugepage_state_file(), ec);
    say(fmt::format("hugepages: back to {} x 2 MiB, {} x 1 GiB", state->pages_2m, state->pages_1g));
    return kExitOk;
  }

  if (!now_2m) {
    say("hugepages: this kernel has no 2 MiB HugeTLB pages (CONFIG_HUGETLBFS off?)");
    return kExitFailed;
  }
  // Keep the first recorded counts: a second reserve must not make the
  // reserved counts look like the original ones.
  if (!fs::exists(hugepage_state_file())) {
    HugepageState previous{*now_2m, now_1g.value_or(0)};
    if (auto written = write_state(hugepage_state_file(), serialize(previous)); !written) {
      say(written.error().message());
      return kExitFailed;
    }
  }
  Result<void> done = write_sysfs(nr_hugepages(2048), std::to_string(std::max(want_2m, *now_2m)));
  if (done && now_1g && want_1g > *now_1g) done = write_sysfs(nr_hugepages(1048576), std::to_string(want_1g));
  auto got_2m = read_count(nr_hugepages(2048)).value_or(0);
  auto got_1g = read_count(nr_hugepages(1048576)).value_or(0);
  say(fmt::format("hugepages: {} x 2 MiB (asked {}), {} x 1 GiB (asked {}){}", got_2m, want_2m, got_1g, want_1g,
                  now_1g ? "" : "; no 1 GiB pages on this machine"));
  if (!done) say(done.error().message());
  if (!done || got_2m < want_2m || (now_1g && got_1g < want_1g)) {
    say("hugepages: fewer pages than asked (memory too fragmented? reserve them on the kernel command line)");
    return kExitFailed;
  }
  return kExitOk;
}

int usage() {
  fmt::print(stderr,
             "usage: vfio-setup bind BDF...\n"
             "       vfio-setup restore [BDF...]\n"
             "       vfio-setup run [-d BDF]... [-s] [-- CMD [ARG...]]\n"
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
  if (command == "list") return command_list();
  if (command == "hugepages") return command_hugepages(args);
  return usage();
}
