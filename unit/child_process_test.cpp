#include "vfiolab/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

namespace vfiolab {
namespace {

using namespace std::chrono_literals;

// Runs `command` with sh -c as the plan runner does, to its end.
struct Finished {
  ChildProcess child;
  std::string output;
  std::chrono::steady_clock::duration took;
};
Finished run_shell(const char* command, std::chrono::milliseconds timeout = 0ms) {
  const auto begin = std::chrono::steady_clock::now();
  auto child = ChildProcess::start({.timeout = timeout}, [&] {
    ::execl("/bin/sh", "sh", "-c", command, static_cast<char*>(nullptr));
  });
  EXPECT_TRUE(child) << child.error();
  std::string output;
  child->run_to_end([&](std::string_view chunk) { output.append(chunk); });
  return {std::move(*child), std::move(output), std::chrono::steady_clock::now() - begin};
}

// A process that is gone, or a zombie nobody has reaped yet (a grandchild
// is reaped by init, in its own time).
bool ended(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return true;
  const auto close = text.rfind(')');
  return close != std::string::npos && text.substr(close + 2, 1) == "Z";
}

TEST(ChildProcess, ExitsWithItsStatusAndBothOutputsCaptured) {
  auto run = run_shell("echo out; echo err >&2; exit 3");
  EXPECT_TRUE(run.child.exited());
  EXPECT_FALSE(run.child.timed_out());
  ASSERT_TRUE(WIFEXITED(run.child.status()));
  EXPECT_EQ(WEXITSTATUS(run.child.status()), 3);
  EXPECT_EQ(run.output, "out\nerr\n");
  EXPECT_FALSE(run.child.output_open());
}

TEST(ChildProcess, OutputLargerThanThePipeArrivesWhole) {
  auto run = run_shell("i=0; while [ $i -lt 20000 ]; do echo 0123456789; i=$((i + 1)); done");
  EXPECT_EQ(run.output.size(), 20000u * 11);
  EXPECT_TRUE(WIFEXITED(run.child.status()) && WEXITSTATUS(run.child.status()) == 0);
}

// The child leaves a grandchild that holds the pipe: the timeout kills the
// whole group, so neither keeps the run going.
TEST(ChildProcess, TimeoutKillsTheWholeGroup) {
  auto run = run_shell("sleep 60 & echo $!; sleep 60", 300ms);
  EXPECT_TRUE(run.child.timed_out());
  EXPECT_TRUE(run.child.exited());
  ASSERT_TRUE(WIFSIGNALED(run.child.status()));
  EXPECT_EQ(WTERMSIG(run.child.status()), SIGKILL);
  EXPECT_LT(run.took, 10s);
  const pid_t grandchild = std::stoi(run.output);
  for (int i = 0; i < 200 && !ended(grandchild); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(ended(grandchild)) << "the grandchild " << grandchild << " outlived the timeout";
}

// Its output closed, the child lingers: the deadline still holds.
TEST(ChildProcess, TimeoutHoldsAfterTheOutputCloses) {
  auto run = run_shell("exec >/dev/null 2>&1; sleep 60", 300ms);
  EXPECT_TRUE(run.child.timed_out());
  EXPECT_LT(run.took, 10s);
}

TEST(ChildProcess, KilledBySignalIsNoTimeout) {
  auto run = run_shell("echo before; kill -TERM $$; echo after", 10'000ms);
  EXPECT_FALSE(run.child.timed_out());
  ASSERT_TRUE(WIFSIGNALED(run.child.status()));
  EXPECT_EQ(WTERMSIG(run.child.status()), SIGTERM);
  EXPECT_EQ(run.output, "before\n");
}

TEST(ChildProcess, BodyThatReturnsExits127) {
  auto child = ChildProcess::start({}, [] {});
  ASSERT_TRUE(child) << child.error();
  child->run_to_end([](std::string_view) {});
  EXPECT_TRUE(WIFEXITED(child->status()) && WEXITSTATUS(child->status()) == 127);
}

// vfio-setup's shape: no pipe, no group of its own, waited for by hand.
TEST(ChildProcess, UncapturedChildIsWaitedForAndSignalled) {
  auto child = ChildProcess::start({.own_process_group = false, .capture_output = false},
                                   [] { ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr)); });
  ASSERT_TRUE(child) << child.error();
  EXPECT_FALSE(child->output_open());
  EXPECT_EQ(::getpgid(child->pid()), ::getpgrp());
  auto now = child->reap(false);
  ASSERT_TRUE(now) << now.error();
  EXPECT_FALSE(*now);
  child->signal(SIGTERM);
  auto ended = child->reap(true);
  ASSERT_TRUE(ended) << ended.error();
  EXPECT_TRUE(*ended);
  EXPECT_TRUE(WIFSIGNALED(child->status()) && WTERMSIG(child->status()) == SIGTERM);
}

// The plan runner's shape: several children, output told apart by index.
TEST(ChildProcess, PollChildrenReadsEachChildsOutput) {
  std::vector<ChildProcess> children;
  for (const char* word : {"first", "second"}) {
    auto child = ChildProcess::start({.timeout = 10'000ms}, [&] {
      ::execl("/bin/echo", "echo", word, static_cast<char*>(nullptr));
    });
    ASSERT_TRUE(child) << child.error();
    children.push_back(std::move(*child));
  }
  std::vector<ChildProcess*> pointers{&children[0], &children[1]};
  std::string outputs[2];
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while ((children[0].output_open() || children[1].output_open()) && std::chrono::steady_clock::now() < give_up) {
    poll_children(pointers, 1000ms, [&](std::size_t i, std::string_view chunk) { outputs[i].append(chunk); });
  }
  EXPECT_EQ(outputs[0], "first\n");
  EXPECT_EQ(outputs[1], "second\n");
  for (auto& child : children) {
    auto ended = child.reap(true);
    ASSERT_TRUE(ended) << ended.error();
    EXPECT_TRUE(WIFEXITED(child.status()) && WEXITSTATUS(child.status()) == 0);
  }
}

}  // namespace
}  // namespace vfiolab
