// A child process with a time limit: the one way the harness (each test in
// a process of its own), the lab's plan runner (each plan entry) and
// vfio-setup's `run` (the command it wraps) start, watch and end a child.
//
// The child is forked and runs a function of the caller's (which execs or
// calls _exit()); by default it gets a process group of its own, so that a
// timeout kills everything it started, and its stdout and stderr go into a
// pipe the parent reads. The parent polls that pipe against the child's
// deadline, kills the whole group when the deadline passes, and waits for
// it. It lives in the core library because all three link it (vfio-setup
// links nothing else of vfiolab's).
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/unique_fd.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <span>
#include <string_view>

namespace vfiolab {

struct ChildOptions {
  // A process group of its own, so a timeout or a signal reaches everything
  // the child started. Off for a child that must stay in the terminal's
  // foreground group (an interactive shell).
  bool own_process_group = true;
  // stdout and stderr into a pipe the parent reads; off: inherited.
  bool capture_output = true;
  // Counted from the fork; zero for none.
  std::chrono::milliseconds timeout{0};
};

// Where a chunk of a child's output goes, as it is read.
using OutputSink = std::function<void(std::string_view chunk)>;

class ChildProcess {
 public:
  using Clock = std::chrono::steady_clock;

  // Forks; the child runs `body`, which must exec or _exit() (it exits 127
  // if `body` returns). stdout is flushed first, so that nothing buffered
  // is written twice. The error is "pipe" or "fork" with the errno.
  static Result<ChildProcess> start(const ChildOptions& options, const std::function<void()>& body);

  // Destroying one neither kills nor waits for the child: one stuck in the
  // kernel cannot be waited for, and a pid that was waited for elsewhere
  // may be another process's by now. The caller ends it (kill_for_timeout,
  // signal) and waits (reap, run_to_end).
  ChildProcess(ChildProcess&&) = default;
  ChildProcess& operator=(ChildProcess&&) = default;

  pid_t pid() const { return pid_; }
  Clock::time_point started() const { return started_; }
  // Clock::time_point::max() without a timeout.
  Clock::time_point deadline() const { return deadline_; }
  bool past_deadline() const { return Clock::now() >= deadline_; }
  // Its output pipe is still open: output was captured and its end not yet read.
  bool output_open() const { return static_cast<bool>(output_); }
  int output_fd() const { return output_.get(); }

  // One read of the output pipe, passed to `sink`; the pipe is closed at its
  // end (every writer closed it) or on a read error.
  void read_output(const OutputSink& sink);

  // `signal` to the child's group when it has one, else to the child.
  void signal(int signal);
  // The deadline passed: SIGKILL to the group, and timed_out() says so.
  void kill_for_timeout();
  bool timed_out() const { return timed_out_; }

  // Waits for the child to end (`block`) or looks whether it has; true once
  // it has (its waitpid status is then status()). An interrupted wait (EINTR)
  // is false, not an error: the caller may have a signal to pass on.
  Result<bool> reap(bool block);
  bool exited() const { return exited_; }
  int status() const { return status_; }

  // The whole life of a child watched alone: its output to `sink` until the
  // output ends or the deadline passes (then its group is killed), then
  // waited for. Killed again after the wait, for what it started that may
  // still hold the pipe.
  void run_to_end(const OutputSink& sink);

 private:
  ChildProcess() = default;

  pid_t pid_ = -1;
  bool own_group_ = true;
  UniqueFd output_;
  Clock::time_point started_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  bool exited_ = false;
  int status_ = 0;
};

// Waits until one of `children` has output (read once, to `sink` with that
// child's index), the earliest deadline of those not yet timed out passes,
// or `longest` has gone by, whichever is first. Timeouts are the caller's
// to act on (past_deadline, kill_for_timeout): the plan runner looks at the
// group before it kills.
void poll_children(std::span<ChildProcess* const> children, std::chrono::milliseconds longest,
                   const std::function<void(std::size_t index, std::string_view chunk)>& sink);

}  // namespace vfiolab
