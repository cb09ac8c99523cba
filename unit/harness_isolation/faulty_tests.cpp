// Tests that misbehave on purpose, run through the real harness by
// check.sh: a crash and a hang must each fail alone while the tests around
// them still run and report.
#include "harness.h"

#include <gtest/gtest.h>

#include <csignal>
#include <thread>

namespace {

TEST(harness_isolation, passes_before) { EXPECT_EQ(vfiolab::harness::device_bdf(), "0000:00:04.0"); }

TEST(harness_isolation, crashes) { std::raise(SIGSEGV); }

TEST(harness_isolation, hangs) {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

TEST(harness_isolation, hangs_with_a_longer_timeout) {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
VFIOLAB_TEST_TIMEOUT(longer, "harness_isolation.hangs_with_a_longer_timeout", 3);

TEST(harness_isolation, fails) { EXPECT_EQ(1, 2) << "on purpose"; }

TEST(harness_isolation, skips) { GTEST_SKIP() << "no such feature here"; }

TEST(harness_isolation, passes_after) { SUCCEED(); }

// Each test has a process of its own: a note for the run must reach the
// tests after it (run_noted), past the crash and the hangs above.
TEST(harness_isolation, notes_for_the_run) {
  EXPECT_FALSE(vfiolab::harness::run_noted("seen"));
  vfiolab::harness::note_for_run("seen");
  vfiolab::harness::note_for_run("seen");
  vfiolab::harness::note_for_run("seen too");
  EXPECT_TRUE(vfiolab::harness::run_noted("seen"));
  EXPECT_FALSE(vfiolab::harness::run_noted("see"));
}

TEST(harness_isolation, sees_an_earlier_tests_note) {
  EXPECT_TRUE(vfiolab::harness::run_noted("seen"));
  EXPECT_TRUE(vfiolab::harness::run_noted("seen too"));
  EXPECT_FALSE(vfiolab::harness::run_noted("never noted"));
}

}  // namespace
