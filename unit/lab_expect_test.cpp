// A lab run held against its lane's expectations: the tests a KTAP document
// holds, the expectations file, and every way the two can disagree.
#include "check.h"
#include "expect.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace vfiolab::lab {
namespace {

// Two programs as the guest reports them: one with tests (a pass, a known
// failure, a SKIP), one that crashed without a failing test of its own.
constexpr std::string_view kRun =
    "KTAP version 1\n"
    "1..3\n"
    "    KTAP version 1\n"
    "    1..4\n"
    "    ok 1 copy.type1\n"
    "    not ok 2 copy.iommufd\n"
    "    ok 3 reset # SKIP the device has no reset\n"
    "    ok 4 copy.type1\n"
    "ok 1 driver:edu\n"
    "    KTAP version 1\n"
    "    1..1\n"
    "    ok 1 open\n"
    "not ok 2 probe\n"
    "ok 3 igb # SKIP $IGB is empty: QEMU 7.2.22 has no igb device\n";

std::vector<Leaf> run_leaves() { return leaves(ktap::parse(kRun)); }

std::vector<Expectation> parsed(std::string_view text) {
  auto entries = parse_expectations(text);
  VFIOLAB_EXPECT_OK(entries);
  return entries ? *entries : std::vector<Expectation>{};
}

bool has_problem(const Verdict& verdict, std::string_view text) {
  return std::any_of(verdict.problems.begin(), verdict.problems.end(),
                     [&](const std::string& p) { return p.find(text) != std::string::npos; });
}

constexpr std::string_view kMatching =
    "# known\n"
    "fail driver:edu/copy.iommufd  QEMU bug: see README\n"
    "fail probe  crashes on 6.12 (kernel log in CI run 12)\n"
    "skip driver:edu/reset the device has no reset\n"
    "skip igb $IGB is empty: QEMU 7.2.22 has no igb device\n";

TEST(LabExpect, LeavesAreTestsWithPathsAndUniqueNames) {
  auto run = run_leaves();
  ASSERT_EQ(run.size(), 7u);
  EXPECT_EQ(run[0].id, "driver:edu/copy.type1");
  EXPECT_EQ(run[1].id, "driver:edu/copy.iommufd");
  EXPECT_EQ(run[1].outcome, ktap::Outcome::fail);
  EXPECT_EQ(run[2].id, "driver:edu/reset");
  EXPECT_EQ(run[2].reason, "the device has no reset");
  EXPECT_EQ(run[3].id, "driver:edu/copy.type1#2");
  EXPECT_EQ(run[4].id, "probe/open");
  // The program failed with no failing test: it stands for itself.
  EXPECT_EQ(run[5].id, "probe");
  EXPECT_EQ(run[5].outcome, ktap::Outcome::fail);
  EXPECT_EQ(run[6].id, "igb");
  EXPECT_EQ(run[6].outcome, ktap::Outcome::skip);
}

TEST(LabExpect, ARunThatMatchesPasses) {
  auto verdict = check(run_leaves(), parsed(kMatching));
  EXPECT_TRUE(verdict.problems.empty()) << verdict.problems.front();
  EXPECT_EQ(verdict.passed, 3);
  EXPECT_EQ(verdict.skipped, 2);
  EXPECT_EQ(verdict.known_failures, (std::vector<std::string>{"driver:edu/copy.iommufd", "probe"}));
}

TEST(LabExpect, AnUnlistedFailureFails) {
  auto verdict = check(run_leaves(), parsed("fail probe evidence\nskip driver:edu/reset the device has no reset\n"
                                            "skip igb $IGB is empty: QEMU 7.2.22 has no igb device\n"));
  ASSERT_EQ(verdict.problems.size(), 1u);
  EXPECT_EQ(verdict.problems[0], "failed, not listed: driver:edu/copy.iommufd");
}

TEST(LabExpect, AListedFailureThatPassesOrDidNotRunIsStale) {
  std::string text(kMatching);
  text += "fail driver:edu/copy.type1 it used to fail\nfail gone/test it was removed\n";
  auto verdict = check(run_leaves(), parsed(text));
  ASSERT_EQ(verdict.problems.size(), 2u);
  EXPECT_TRUE(has_problem(verdict, "stale: driver:edu/copy.type1 passed, listed as failing on line 6"));
  EXPECT_TRUE(has_problem(verdict, "stale: gone/test (line 7, fail) did not run"));
}

TEST(LabExpect, FlakyAcceptsEither) {
  auto verdict = check(run_leaves(), parsed("flaky driver:edu/copy.iommufd sometimes\nflaky driver:edu/copy.type1 "
                                            "sometimes\nfail probe e\nskip driver:edu/reset the device has no reset\n"
                                            "skip igb $IGB is empty: QEMU 7.2.22 has no igb device\n"));
  EXPECT_TRUE(verdict.problems.empty()) << verdict.problems.front();
  EXPECT_EQ(verdict.known_failures.size(), 2u);
  EXPECT_EQ(verdict.passed, 3);
}

TEST(LabExpect, SkipsThatAppearDisappearOrChangeReasonFail) {
  // The igb SKIP is not listed; the reset SKIP has another reason; a SKIP
  // listed for a test that passes.
  auto verdict = check(run_leaves(), parsed("fail driver:edu/copy.iommufd e\nfail probe e\n"
                                            "skip driver:edu/reset no reset\nskip probe/open was skipped\n"));
  ASSERT_EQ(verdict.problems.size(), 3u);
  EXPECT_TRUE(has_problem(verdict, "new SKIP: igb: $IGB is empty: QEMU 7.2.22 has no igb device"));
  EXPECT_TRUE(has_problem(verdict, "SKIP reason changed: driver:edu/reset: now 'the device has no reset', line 3 says "
                                   "'no reset'"));
  EXPECT_TRUE(has_problem(verdict, "SKIP gone: probe/open passed"));
  EXPECT_EQ(verdict.skipped, 0);
}

// A fast-tier run: the suite entry driver:edu split into driver:edu (its
// copies) and driver:edu:blocked (one blocked copy); no probe, no igb.
constexpr std::string_view kPartRun =
    "KTAP version 1\n"
    "1..2\n"
    "    KTAP version 1\n"
    "    1..1\n"
    "    not ok 1 copy.iommufd\n"
    "not ok 1 driver:edu\n"
    "    KTAP version 1\n"
    "    1..1\n"
    "    ok 1 reset # SKIP the device has no reset\n"
    "ok 2 driver:edu:blocked\n"
    "ok 3 igb:vf:blocked # SKIP $IGB is empty: QEMU 7.2.22 has no igb device\n";

TEST(LabExpect, APartOfThePlanIsHeldAgainstWhatRan) {
  const auto run = leaves(ktap::parse(kPartRun));
  // The whole file: what did not run is stale.
  auto whole = check(run, parsed(kMatching));
  EXPECT_TRUE(has_problem(whole, "stale: probe (line 3, fail) did not run"));
  // A part: what did not run is no difference, and driver:edu:blocked's
  // SKIP is held against driver:edu's entry; a whole program split from
  // another (igb:vf:blocked) against that program's.
  std::string text(kMatching);
  text += "skip igb:vf $IGB is empty: QEMU 7.2.22 has no igb device\n";
  auto part = check(run, parsed(text), Scope::part);
  EXPECT_TRUE(part.problems.empty()) << part.problems.front();
  EXPECT_EQ(part.known_failures, (std::vector<std::string>{"driver:edu/copy.iommufd"}));
  EXPECT_EQ(part.skipped, 2);
}

TEST(LabExpect, APartStillFailsOnEveryDifferenceInWhatRan) {
  const auto run = leaves(ktap::parse(kPartRun));
  // The split entry's SKIP with another reason; the failure not listed.
  auto part = check(run, parsed("skip driver:edu/reset no reset\n"), Scope::part);
  ASSERT_EQ(part.problems.size(), 3u);
  EXPECT_TRUE(has_problem(part, "failed, not listed: driver:edu/copy.iommufd"));
  EXPECT_TRUE(has_problem(part, "new SKIP: igb:vf:blocked"));
  EXPECT_TRUE(has_problem(part, "SKIP reason changed: driver:edu:blocked/reset"));
  // Only a suffix after the device is dropped: "driver/reset" is no split
  // of anything, and its SKIP is new.
  auto unsplit = check(leaves(ktap::parse("KTAP version 1\n1..1\n    KTAP version 1\n    1..1\n"
                                          "    ok 1 reset # SKIP r\nok 1 driver\n")),
                       parsed("skip dri/reset r\n"), Scope::part);
  ASSERT_EQ(unsplit.problems.size(), 1u);
  EXPECT_EQ(unsplit.problems[0], "new SKIP: driver/reset: r");
}

TEST(LabExpect, BadFilesAreRefusedWithTheLine) {
  auto kind = parse_expectations("# c\nxfail a b\n");
  ASSERT_FALSE(kind);
  EXPECT_EQ(kind.error().context, "line 2: 'xfail' is not fail, flaky, skip or report");
  auto evidence = parse_expectations("fail a/b\n");
  ASSERT_FALSE(evidence);
  EXPECT_EQ(evidence.error().context, "line 1: fail a/b has no evidence");
  auto reason = parse_expectations("skip a/b   \n");
  ASSERT_FALSE(reason);
  EXPECT_EQ(reason.error().context, "line 1: skip a/b has no reason");
  auto twice = parse_expectations("skip a r\n\nfail a e\n");
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().context, "line 3: a is already listed on line 1");
}

TEST(LabExpect, DraftListsSkipsAndLeavesFailuresToAPerson) {
  auto draft = draft_expectations(run_leaves());
  EXPECT_EQ(draft,
            "# failed: fail driver:edu/copy.iommufd EVIDENCE (confirm, then write the evidence and uncomment)\n"
            "skip driver:edu/reset the device has no reset\n"
            "# failed: fail probe EVIDENCE (confirm, then write the evidence and uncomment)\n"
            "skip igb $IGB is empty: QEMU 7.2.22 has no igb device\n");
  // The draft, read back, holds the run's SKIPs: the failures still fail.
  auto verdict = check(run_leaves(), parsed(draft));
  EXPECT_EQ(verdict.skipped, 2);
  EXPECT_EQ(verdict.problems.size(), 2u);
}

// Found by fuzz/expect.cpp: a draft named repeated tests "prog #2/t" and
// tests with spaces in their names as they were, which no expectations line
// can name, so the draft did not parse (or parsed to other IDs).
TEST(LabExpect, EveryIdIsOneWordSoADraftParsesAndHolds) {
  const auto run = leaves(ktap::parse(
      "KTAP version 1\n1..4\n"
      "    ok 1 t # SKIP no device\nok 1 prog\n"
      "    ok 1 t # SKIP no device\nok 2 prog\n"
      "ok 3 selftests: vfio: a/b # SKIP not built\n"
      "ok 4 # SKIP no name\n"));
  ASSERT_EQ(run.size(), 4u);
  EXPECT_EQ(run[0].id, "prog/t");
  EXPECT_EQ(run[1].id, "prog#2/t");
  EXPECT_EQ(run[2].id, "selftests:_vfio:_a_b");
  EXPECT_EQ(run[3].id, "(unnamed)");
  const auto verdict = check(run, parsed(draft_expectations(run)));
  EXPECT_TRUE(verdict.problems.empty()) << verdict.problems.front();
  EXPECT_EQ(verdict.skipped, 4);
}

// Found by fuzz/expect.cpp: the draft wrote a SKIP without a reason as
// "(no reason given)", which the run's empty reason then did not match.
TEST(LabExpect, ASkipWithoutAReasonHoldsAgainstItsDraft) {
  const auto run = leaves(ktap::parse("KTAP version 1\n1..1\nok 1 t # SKIP\n"));
  ASSERT_EQ(run.size(), 1u);
  EXPECT_EQ(run[0].reason, "(no reason given)");
  const auto verdict = check(run, parsed(draft_expectations(run)));
  EXPECT_TRUE(verdict.problems.empty()) << verdict.problems.front();
  EXPECT_EQ(verdict.skipped, 1);
}

// Kernel reports: a "report PROGRAM/WORD" entry lists the reports of
// PROGRAM (alone or beside others) that have WORD in a line; any other
// report fails the lane, and so does an entry that matched none.
TEST(LabExpect, KernelReportsHeldAgainstReportEntries) {
  auto expected = check(parse_expectations(
      "report vfio_fail_nth_test:device/remove_proc_entry kernel/irq/proc.c removes what it never created\n"));
  ASSERT_EQ(expected.size(), 1u);
  using kernel_log::Finding;
  using kernel_log::Kind;
  const Finding known{Kind::warning, 10, "vfio_fail_nth_test:device or vfio_pci_device_test:edu",
                      {"WARNING: CPU: 0 PID: 70 at fs/proc/generic.c:733 remove_proc_entry+0x96/0x106"}};
  const Finding other_program{Kind::warning, 20, "vfio_pci_device_test:edu",
                              {"WARNING: CPU: 0 PID: 71 at fs/proc/generic.c:733 remove_proc_entry+0x96/0x106"}};
  const Finding other_word{Kind::kasan, 30, "vfio_fail_nth_test:device", {"BUG: KASAN: use-after-free in f"}};

  auto verdict = check_reports({known}, expected, Scope::whole_plan);
  EXPECT_EQ(verdict.known.size(), 1u);
  EXPECT_TRUE(verdict.problems.empty());

  verdict = check_reports({known, other_program, other_word}, expected, Scope::whole_plan);
  EXPECT_EQ(verdict.known.size(), 1u);
  ASSERT_EQ(verdict.problems.size(), 2u);
  EXPECT_NE(verdict.problems[0].find("during vfio_pci_device_test:edu"), std::string::npos) << verdict.problems[0];
  EXPECT_NE(verdict.problems[1].find("KASAN"), std::string::npos) << verdict.problems[1];

  verdict = check_reports({}, expected, Scope::whole_plan);
  ASSERT_EQ(verdict.problems.size(), 1u);
  EXPECT_NE(verdict.problems[0].find("stale: report"), std::string::npos);
  EXPECT_TRUE(check_reports({}, expected, Scope::part).problems.empty());

  EXPECT_FALSE(parse_expectations("report no-slash evidence\n"));
  EXPECT_FALSE(parse_expectations("report prog/ evidence\n"));
}

}  // namespace
}  // namespace vfiolab::lab
