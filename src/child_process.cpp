#include "vfiolab/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <vector>

namespace vfiolab {

Result<ChildProcess> ChildProcess::start(const ChildOptions& options, const std::function<void()>& body) {
  ChildProcess child;
  child.own_group_ = options.own_process_group;
  UniqueFd write_end;
  if (options.capture_output) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      const int err = errno;
      return std::unexpected(make_error(err, "pipe"));
    }
    child.output_.reset(fds[0]);
    write_end.reset(fds[1]);
  }
  std::fflush(stdout);
  child.pid_ = ::fork();
  if (child.pid_ < 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "fork"));
  }
  if (child.pid_ == 0) {
    if (options.own_process_group) ::setpgid(0, 0);
    if (write_end) {
      ::dup2(write_end.get(), STDOUT_FILENO);
      ::dup2(write_end.get(), STDERR_FILENO);
    }
    body();
    ::_exit(127);
  }
  // Also here, so the group exists before the parent can signal it (the
  // child may not have run yet).
  if (options.own_process_group) ::setpgid(child.pid_, child.pid_);
  child.started_ = Clock::now();
  if (options.timeout.count() > 0) child.deadline_ = child.started_ + options.timeout;
  return child;
}

void ChildProcess::read_output(const OutputSink& sink) {
  if (!output_) return;
  char chunk[8192];
  const ssize_t got = ::read(output_.get(), chunk, sizeof chunk);
  if (got > 0) {
    sink(std::string_view(chunk, static_cast<std::size_t>(got)));
  } else if (got == 0 || errno != EINTR) {
    output_.reset();
  }
}

void ChildProcess::signal(int signal) { ::kill(own_group_ ? -pid_ : pid_, signal); }

void ChildProcess::kill_for_timeout() {
  timed_out_ = true;
  signal(SIGKILL);
}

Result<bool> ChildProcess::reap(bool block) {
  if (exited_) return true;
  const pid_t waited = ::waitpid(pid_, &status_, block ? 0 : WNOHANG);
  if (waited == pid_) {
    exited_ = true;
    return true;
  }
  if (waited < 0) {
    const int err = errno;
    if (err != EINTR) return std::unexpected(make_error(err, "waitpid", "pid " + std::to_string(pid_)));
  }
  return false;
}

void ChildProcess::run_to_end(const OutputSink& sink) {
  ChildProcess* self = this;
  while (output_open()) {
    if (past_deadline()) {
      kill_for_timeout();
      break;
    }
    poll_children({&self, 1}, std::chrono::milliseconds::max(),
                  [&](std::size_t, std::string_view chunk) { sink(chunk); });
  }
  // Output ended (or none was captured): the wait for the child keeps the
  // deadline too, looking at it ever less often, up to every 50 ms.
  auto pause = std::chrono::milliseconds(1);
  while (!exited_) {
    if (!timed_out_ && past_deadline()) kill_for_timeout();
    // After the kill, or without a deadline, the wait may block.
    const bool block = timed_out_ || deadline_ == Clock::time_point::max();
    auto ended = reap(block);
    if (!ended) break;  // no such child: nothing to wait for
    if (!*ended && !block) {
      ::poll(nullptr, 0, static_cast<int>(pause.count()));
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }
  // What the child started may outlive it and still hold the pipe.
  if (timed_out_) signal(SIGKILL);
}

void poll_children(std::span<ChildProcess* const> children, std::chrono::milliseconds longest,
                   const std::function<void(std::size_t index, std::string_view chunk)>& sink) {
  std::vector<pollfd> fds;
  auto wait = longest;
  const auto now = ChildProcess::Clock::now();
  for (const ChildProcess* child : children) {
    fds.push_back({child->output_open() ? child->output_fd() : -1, POLLIN, 0});
    if (!child->timed_out() && child->deadline() != ChildProcess::Clock::time_point::max()) {
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(child->deadline() - now));
    }
  }
  // poll() takes an int of milliseconds; negative would mean forever.
  const auto timeout = std::clamp<long long>(wait.count(), 0, 1 << 30);
  if (::poll(fds.data(), fds.size(), static_cast<int>(timeout)) <= 0) return;
  for (std::size_t i = 0; i < children.size(); ++i) {
    if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
      children[i]->read_output([&](std::string_view chunk) { sink(i, chunk); });
    }
  }
}

}  // namespace vfiolab
