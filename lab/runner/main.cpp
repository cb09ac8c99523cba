// vfiolab-plan-runner: runs the lab's plan inside the guest (lab/guest/init
// starts it). Entries that share no device run at the same time, up to
// --jobs at once (see plan.h for the rules); each in its own process group
// with a time limit.
//
//   vfiolab-plan-runner --plan FILE --results FILE --progress FILE [--jobs N] [--timeout SECONDS]
//                       [--lava-console FILE]
//
// --results gets one KTAP document: each finished program's output as a
// nested block, then its result line; results are numbered in the order
// programs finish. --progress gets every line as it happens, tab-separated,
// for the host to show live and to time:
//   plan  COUNT JOBS UPTIME          once, first
//   start NAME  UPTIME               a program started
//   out   NAME  TEXT                 a line of its output
//   end   NAME  STATUS SECONDS       it finished (exit status, "timeout", or
//                                    "not started")
// The kernel log gets "vfiolab: begin N NAME" and "vfiolab: end N NAME
// exit=S" (N is the plan position), so a kernel report can be tied to the
// programs running when it appeared.
// --lava-console also writes the results, and the lines LAVA's monitors
// read, to that console, with the kernel log relayed beside them
// (lava_console.h; a LAVA job's guest, lab/lava).
#include "lava_console.h"
#include "plan.h"

#include "vfiolab/child_process.h"
#include "vfiolab/ktap.h"
#include "vfiolab/sysfs.h"
#include "vfiolab/text.h"
#include "vfiolab/unique_fd.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace vfiolab;
using Clock = std::chrono::steady_clock;

// write() all of `text`, ignoring errors: a port that went away must not
// stop the plan.
void write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string uptime() {
  std::ifstream in("/proc/uptime");
  std::string seconds;
  in >> seconds;
  return seconds.empty() ? "0" : seconds;
}

std::optional<std::string> environment(std::string_view name) {
  const char* value = std::getenv(std::string(name).c_str());
  return value ? std::optional<std::string>(value) : std::nullopt;
}

constexpr std::chrono::seconds kStuckGrace{10};

std::string read_small(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// What each thread of a timed-out program was doing when its time ran out:
// its state (R running, S sleeping, D uninterruptible), the kernel function
// it waits in, the system call it is in and, where the kernel has
// CONFIG_STACKTRACE, its kernel stack. Read before the SIGKILL, so that a
// hang can be told apart: a futex wait is userspace, an ioctl asleep in
// vfio or iommufd is the kernel.
std::vector<std::string> describe_process_group(pid_t group) {
  static const std::map<long, std::string_view> kSyscalls{
      {0, "read"},   {1, "write"},     {7, "poll"},    {16, "ioctl"},  {23, "select"}, {35, "nanosleep"},
      {61, "wait4"}, {202, "futex"},   {230, "clock_nanosleep"},       {232, "epoll_wait"}, {271, "ppoll"}};
  std::vector<std::string> lines;
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = proc.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    // /proc/PID/stat: "pid (comm) state ppid pgrp ...", comm may hold spaces.
    const std::string stat = read_small(proc.path() / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 1));
    std::string state;
    long ppid = 0, pgrp = 0;
    if (!(fields >> state >> ppid >> pgrp) || pgrp != group) continue;
    for (const auto& task : std::filesystem::directory_iterator(proc.path() / "task", ec)) {
      const std::string tstat = read_small(task.path() / "stat");
      const auto open = tstat.find('(');
      const auto tclose = tstat.rfind(')');
      if (open == std::string::npos || tclose == std::string::npos) continue;
      std::istringstream tfields(tstat.substr(tclose + 1));
      std::string tstate;
      tfields >> tstate;
      std::string syscall(text::trim(read_small(task.path() / "syscall")));
      long number = -1;
      std::from_chars(syscall.data(), syscall.data() + syscall.size(), number);
      if (auto known = kSyscalls.find(number); known != kSyscalls.end()) syscall = fmt::format("{} ({})", known->second, syscall);
      lines.push_back(fmt::format("# at timeout: pid {} tid {} ({}) state {} wchan {} syscall {}", pid,
                                  task.path().filename().string(), tstat.substr(open + 1, tclose - open - 1), tstate,
                                  text::trim(read_small(task.path() / "wchan")), syscall.empty() ? "?" : syscall));
      std::istringstream stack(read_small(task.path() / "stack"));
      for (std::string frame; std::getline(stack, frame);) lines.push_back("#   " + frame);
    }
  }
  if (lines.empty()) lines.push_back(fmt::format("# at timeout: no process left in group {}", group));
  return lines;
}

struct Job {
  std::size_t entry = 0;
  ChildProcess child;
  std::string partial;      // output after the last newline
  std::vector<std::string> lines;
};

class Runner {
 public:
  Runner(std::vector<lab::PlanEntry> plan, std::size_t jobs, std::chrono::seconds timeout, UniqueFd results,
         UniqueFd progress, std::unique_ptr<lab::LavaConsole> lava)
      : plan_(std::move(plan)),
        timeout_(timeout),
        results_(std::move(results)),
        progress_(std::move(progress)),
        lava_(std::move(lava)),
        kmsg_(::open("/dev/kmsg", O_WRONLY | O_CLOEXEC)),
        jobs_allowed_(jobs),
        scheduler_(resources(), jobs) {}

  void run() {
    results(fmt::format("KTAP version 1\n1..{}\n", plan_.size()));
    progress(fmt::format("plan\t{}\t{}\t{}", plan_.size(), jobs_allowed_, uptime()));
    kmsg("plan start");
    while (!scheduler_.done()) {
      for (std::size_t entry : scheduler_.ready()) start(entry);
      wait_for_events();
    }
    kmsg("plan done");
    if (lava_) lava_->close();
  }

 private:
  std::vector<std::set<std::string>> resources() {
    Sysfs sysfs;
    auto group_of = [&](const std::string& text) -> std::optional<int> {
      auto bdf = parse_bdf(text);
      // A group that cannot be read counts as none: the device is its own resource.
      return bdf ? sysfs.iommu_group(*bdf).value_or(std::nullopt) : std::nullopt;
    };
    std::vector<std::set<std::string>> held;
    for (const auto& entry : plan_) {
      held.push_back(lab::entry_resources(entry, lab::named_devices(entry.command, environment), group_of));
    }
    return held;
  }

  void progress(const std::string& line) { write_all(progress_.get(), line + "\n"); }
  void results(const std::string& text) {
    write_all(results_.get(), text);
    if (lava_) lava_->ktap(text);
  }
  void kmsg(const std::string& text) {
    if (kmsg_) write_all(kmsg_.get(), "vfiolab: " + text + "\n");
  }

  void start(std::size_t entry) {
    const auto& e = plan_[entry];
    if (auto why = lab::unmet_need(e, environment)) {
      progress(fmt::format("start\t{}\t{}", e.name, uptime()));
      end_without_running(entry, "4", "not run: " + *why, "ok", " # SKIP " + *why);
      return;
    }
    kmsg(fmt::format("begin {} {}", entry + 1, e.name));
    progress(fmt::format("start\t{}\t{}", e.name, uptime()));
    // A group of its own: a timeout kills everything the program started.
    auto child = ChildProcess::start({.timeout = timeout_}, [&] {
      int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, STDIN_FILENO);
      if (null > STDERR_FILENO) ::close(null);
      if (::chdir("/tmp") != 0) _exit(127);
      ::execl("/bin/sh", "sh", "-c", e.command.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    });
    if (!child) {
      finish_without_running(entry, fmt::format("{}: {}", child.error().operation, std::strerror(child.error().errnum)));
      return;
    }
    scheduler_.started(entry);
    jobs_.push_back(Job{entry, std::move(*child), {}, {}});
  }

  // An entry that ends without running: a SKIP for an unmet +needs, a
  // failure for a program that could not even be started. The live view,
  // which may have been told it started, hears that it ended.
  void end_without_running(std::size_t entry, std::string_view status, const std::string& note,
                           std::string_view verdict, std::string_view directive) {
    const auto& name = plan_[entry].name;
    progress(fmt::format("end\t{}\t{}\t0", name, status));
    scheduler_.started(entry);
    scheduler_.finished(entry);
    report(entry, {fmt::format("# {}: {}", name, note)}, verdict, directive);
  }
  void finish_without_running(std::size_t entry, const std::string& why) {
    end_without_running(entry, "not started", why, "not ok", "");
  }

  void take_output(Job& job, std::string_view chunk) {
    job.partial.append(chunk);
    std::size_t start = 0;
    for (;;) {
      auto end = job.partial.find('\n', start);
      if (end == std::string::npos) break;
      add_line(job, job.partial.substr(start, end - start));
      start = end + 1;
    }
    job.partial.erase(0, start);
  }

  void add_line(Job& job, std::string line) {
    progress(fmt::format("out\t{}\t{}", plan_[job.entry].name, line));
    job.lines.push_back(std::move(line));
  }

  void wait_for_events() {
    if (jobs_.empty()) return;
    std::vector<ChildProcess*> children;
    for (auto& job : jobs_) children.push_back(&job.child);
    // Output or the next deadline ends the wait. A program that closed its
    // output but has not exited yet is looked at again soon.
    bool lingering = std::any_of(jobs_.begin(), jobs_.end(), [](const Job& j) { return !j.child.output_open(); });
    bool deadlines = std::any_of(jobs_.begin(), jobs_.end(), [](const Job& j) { return !j.child.timed_out(); });
    const auto longest = lingering   ? std::chrono::milliseconds(20)
                         : deadlines ? std::chrono::milliseconds::max()
                                     : std::chrono::milliseconds(1000);
    poll_children(children, longest, [&](std::size_t i, std::string_view chunk) { take_output(jobs_[i], chunk); });

    for (auto& job : jobs_) {
      if (!job.child.timed_out() && job.child.past_deadline()) {
        for (auto& line : describe_process_group(job.child.pid())) add_line(job, std::move(line));
        job.child.kill_for_timeout();
      }
      // A wait that fails leaves it running: one that timed out is let go as stuck.
      if (!job.child.exited()) (void)job.child.reap(false);
    }
    for (std::size_t i = 0; i < jobs_.size();) {
      const ChildProcess& child = jobs_[i].child;
      // Done when it exited and its output is drained (or, after a timeout,
      // when it exited: its children were killed with it).
      // One that SIGKILL did not end within kStuckGrace is stuck in the
      // kernel: reported, and left behind, so the rest of the plan runs.
      const bool stuck = child.timed_out() && !child.exited() && Clock::now() >= child.deadline() + kStuckGrace;
      if ((child.exited() && (!child.output_open() || child.timed_out())) || stuck) {
        finish(jobs_[i]);
        jobs_.erase(jobs_.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
  }

  void finish(Job& job) {
    if (!job.partial.empty()) add_line(job, std::exchange(job.partial, {}));
    const auto& e = plan_[job.entry];
    const ChildProcess& child = job.child;
    const double seconds = std::chrono::duration<double>(Clock::now() - child.started()).count();
    const int wait_status = child.status();
    int code = !child.exited() ? -1 : WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
    std::string status = child.timed_out() ? "timeout" : std::to_string(code);
    kmsg(fmt::format("end {} {} exit={}", job.entry + 1, e.name, status));
    progress(fmt::format("end\t{}\t{}\t{:.3f}", e.name, status, seconds));
    scheduler_.finished(job.entry);

    std::vector<std::string> block;
    for (const auto& line : job.lines) block.push_back("    " + line);
    if (child.timed_out()) {
      block.push_back(child.exited() ? fmt::format("# {}: killed after {}s", e.name, timeout_.count())
                                 : fmt::format("# {}: killed after {}s, and still not gone {}s later (stuck in the "
                                               "kernel: see the kernel log)",
                                               e.name, timeout_.count(), kStuckGrace.count()));
      report(job.entry, block, "not ok", " # TIMEOUT");
    } else if (code == ktap::kExitPass) {
      report(job.entry, block, "ok", "");
    } else if (code == ktap::kExitSkip) {
      const std::string why = lab::whole_skip_reason(job.lines);
      report(job.entry, block, "ok", why.empty() ? std::string(" # SKIP") : " # SKIP " + why);
    } else {
      block.push_back(fmt::format("# {}: exit status {}", e.name, code));
      report(job.entry, block, "not ok", "");
    }
  }

  void report(std::size_t entry, const std::vector<std::string>& block, std::string_view verdict,
              std::string_view directive) {
    std::string text;
    for (const auto& line : block) text += line + "\n";
    const std::string result_line = fmt::format("{} {} {}{}", verdict, ++reported_, plan_[entry].name, directive);
    results(text + result_line + "\n");
    if (lava_) lava_->finished(entry, block, result_line);
  }

  std::vector<lab::PlanEntry> plan_;
  std::chrono::seconds timeout_;
  UniqueFd results_;
  UniqueFd progress_;
  std::unique_ptr<lab::LavaConsole> lava_;
  UniqueFd kmsg_;
  std::size_t jobs_allowed_;
  lab::Scheduler scheduler_;
  std::vector<Job> jobs_;
  int reported_ = 0;
};

int usage() {
  fmt::print(stderr,
             "usage: vfiolab-plan-runner --plan FILE --results FILE --progress FILE [--jobs N] [--timeout SECONDS] "
             "[--lava-console FILE]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string plan_path, results_path, progress_path, lava_path;
  unsigned long jobs = 1, timeout = 900;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    std::string value = argv[++i];
    if (arg == "--plan") {
      plan_path = value;
    } else if (arg == "--results") {
      results_path = value;
    } else if (arg == "--progress") {
      progress_path = value;
    } else if (arg == "--lava-console") {
      lava_path = value;
    } else if (arg == "--jobs" || arg == "--timeout") {
      auto n = text::positive_number(arg, value);
      if (!n) {
        fmt::print(stderr, "vfiolab-plan-runner: {}\n", n.error().message());
        return 2;
      }
      (arg == "--jobs" ? jobs : timeout) = *n;
    } else {
      return usage();
    }
  }
  if (plan_path.empty() || results_path.empty() || progress_path.empty()) return usage();

  std::ifstream in(plan_path);
  if (!in) {
    fmt::print(stderr, "vfiolab-plan-runner: cannot read plan '{}'\n", plan_path);
    return 1;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto plan = lab::parse_plan(text.str());
  if (!plan) {
    fmt::print(stderr, "vfiolab-plan-runner: {}\n", plan.error().message());
    return 1;
  }
  // Serial ports in the guest; plain files when tried on a host.
  UniqueFd results(::open(results_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  UniqueFd progress(::open(progress_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!results || !progress) {
    fmt::print(stderr, "vfiolab-plan-runner: cannot open '{}': {}\n", !results ? results_path : progress_path,
               std::strerror(errno));
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<lab::LavaConsole> lava;
  if (!lava_path.empty()) {
    std::vector<std::string> names;
    for (const auto& entry : *plan) names.push_back(entry.name);
    lava = std::make_unique<lab::LavaConsole>(lava_path, std::move(names), /*relay_kernel_log=*/true);
    if (!lava->is_open()) {
      fmt::print(stderr, "vfiolab-plan-runner: cannot open '{}': {}\n", lava_path, std::strerror(errno));
      return 1;
    }
  }
  Runner(std::move(*plan), jobs, std::chrono::seconds(timeout), std::move(results), std::move(progress),
         std::move(lava))
      .run();
  return 0;
}
