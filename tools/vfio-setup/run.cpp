// vfio-setup run: bind the devices, run a command (or a shell) on them, and
// restore them however it ends.
#include "commands.h"
#include "common.h"

#include "vfiolab/child_process.h"

#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>

namespace vfiolab::setup {
namespace {

volatile sig_atomic_t g_signal = 0;
void remember_signal(int signal) { g_signal = signal; }

}  // namespace

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
      auto count_before = about_device(Sysfs().sriov_numvfs(*parse_bdf(name)), name, "run --vfs");
      if (!count_before) {
        say(count_before.error());
        bound = kExitFailed;
        break;
      }
      vfs_undo.emplace_back(**before, count_before->value_or(0));
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

  // CMD stays in our process group, with our terminal and output: a shell
  // run with -s must be in the terminal's foreground group.
  auto child = ChildProcess::start({.own_process_group = false, .capture_output = false}, [&] {
    struct sigaction reset {};
    reset.sa_handler = SIG_DFL;
    for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaction(signal, &reset, nullptr);
    ::setenv("VFIO_SELFTESTS_BDF", canonical[0].c_str(), 1);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    say(make_error(err, fmt::format("cannot run '{}'", argv[0])));
    ::_exit(127);
  });
  if (!child) {
    say(child.error());
    restore_held();
    return kExitFailed;
  }

  bool lost_child = false;
  bool forwarded = false;
  auto killed_at = std::chrono::steady_clock::time_point::max();
  for (;;) {
    auto ended = child->reap(!g_signal);
    if (!ended) {
      // CMD's status is unknown: the run cannot pass.
      say(make_error(ended.error().errnum, "waitpid", fmt::format("CMD pid {}", child->pid())));
      lost_child = true;
      break;
    }
    if (*ended) break;
    if (g_signal && !forwarded) {
      // The child may not share our terminal's process group: pass it on,
      // and insist after a grace period (an interactive shell ignores TERM).
      child->signal(g_signal);
      forwarded = true;
      killed_at = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    }
    if (forwarded && std::chrono::steady_clock::now() > killed_at) child->signal(SIGKILL);
    if (g_signal) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const int status = child->status();
  int child_status = lost_child             ? kExitFailed
                     : WIFEXITED(status)    ? WEXITSTATUS(status)
                                            : 128 + WTERMSIG(status);
  if (g_signal) say(fmt::format("caught signal {}; restoring", static_cast<int>(g_signal)));
  int restored = restore_held();
  if (restored != kExitOk && child_status == 0) return kExitFailed;
  return child_status;
}

}  // namespace vfiolab::setup
