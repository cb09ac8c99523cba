// One run's KTAP from the machines it was split over (lab/run --vms).
#include "merge.h"

#include "vfiolab/ktap.h"

#include <gtest/gtest.h>

namespace vfiolab::lab {
namespace {

// Machine 1 ran "a" and "c" and stopped inside "e"; machine 2 ran "d",
// "b" and a program the plan does not name.
constexpr std::string_view kMachine1 =
    "KTAP version 1\n"
    "1..3\n"
    "    KTAP version 1\n"
    "    1..1\n"
    "    ok 1 a.one\n"
    "ok 1 a\n"
    "# c's own line\n"
    "    KTAP version 1\n"
    "    1..2\n"
    "    not ok 1 c.one\n"
    "    ok 2 c.two # SKIP why\n"
    "not ok 2 c\n"
    "    KTAP version 1\n"
    "    1..4\n"
    "    ok 1 e.one\n";
constexpr std::string_view kMachine2 =
    "KTAP version 1\n"
    "1..3\n"
    "ok 1 d # SKIP $IGB is empty\n"
    "    KTAP version 1\n"
    "    1..1\n"
    "    ok 1 b.one\n"
    "ok 2 b\n"
    "ok 3 stranger\n";

TEST(LabMerge, PlanOrderRenumberedWithTheWholePlanCounted) {
  const std::string merged =
      merge_ktap({"a", "b", "c", "d", "e"}, {std::string(kMachine1), std::string(kMachine2)});
  EXPECT_EQ(merged,
            "KTAP version 1\n"
            "1..6\n"
            "    KTAP version 1\n"
            "    1..1\n"
            "    ok 1 a.one\n"
            "ok 1 a\n"
            "    KTAP version 1\n"
            "    1..1\n"
            "    ok 1 b.one\n"
            "ok 2 b\n"
            "# c's own line\n"
            "    KTAP version 1\n"
            "    1..2\n"
            "    not ok 1 c.one\n"
            "    ok 2 c.two # SKIP why\n"
            "not ok 3 c\n"
            "ok 4 d # SKIP $IGB is empty\n"
            "ok 5 stranger\n");
  // The parser reads it as the run it is: e never reported.
  auto document = ktap::parse(merged);
  ASSERT_TRUE(document.plan);
  EXPECT_EQ(*document.plan, 6);
  EXPECT_EQ(document.results.size(), 5u);
  ASSERT_EQ(document.problems.size(), 1u);
  EXPECT_EQ(document.problems[0].message, "planned 6 results, got 5");
}

TEST(LabMerge, AMachineThatNeverStartedLeavesItsProgramsMissing) {
  const std::string merged = merge_ktap({"a", "b"}, {std::string(kMachine2), std::string()});
  auto document = ktap::parse(merged);
  ASSERT_TRUE(document.plan);
  EXPECT_EQ(*document.plan, 4);  // a and b of the plan, d and stranger not in it; a never reported
  EXPECT_EQ(document.results.size(), 3u);
}

}  // namespace
}  // namespace vfiolab::lab
