// The lab's plan: parsing, the devices a command names, the resources an
// entry holds, and the order the scheduler starts entries in.
#include "check.h"
#include "plan.h"

#include <gtest/gtest.h>

#include <map>

namespace vfiolab::lab {
namespace {

const std::map<std::string, std::string, std::less<>> kEnv = {
    {"EDU", "0000:00:04.0"}, {"NVME", "0000:00:05.0"}, {"A", "0000:01:01.0"}, {"B", "0000:01:02.0"},
    {"EMPTY", ""}, {"WORD", "hello"}};

std::optional<std::string> lookup(std::string_view name) {
  auto it = kEnv.find(name);
  return it == kEnv.end() ? std::nullopt : std::optional<std::string>(it->second);
}

// The bridged pair shares group 7; the others have a group each.
std::optional<int> group_of(const std::string& bdf) {
  if (bdf == "0000:01:01.0" || bdf == "0000:01:02.0") return 7;
  if (bdf == "0000:00:04.0") return 1;
  if (bdf == "0000:00:05.0") return 2;
  return std::nullopt;
}

std::set<std::string> held(const std::string& line) {
  const auto plan = check(parse_plan(line));
  const auto& entry = plan.at(0);
  return entry_resources(entry, named_devices(entry.command, lookup), group_of);
}

TEST(LabPlan, ParsesNamesResourcesAndCommands) {
  auto plan = check(parse_plan("# a comment\n\nfirst  cmd --x $EDU\nsecond +alone +pool  prog a b\r\n  \n"));
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].name, "first");
  EXPECT_TRUE(plan[0].resources.empty());
  EXPECT_EQ(plan[0].command, "cmd --x $EDU");
  EXPECT_EQ(plan[0].line, 3);
  EXPECT_EQ(plan[1].name, "second");
  EXPECT_EQ(plan[1].resources, (std::vector<std::string>{"alone", "pool"}));
  EXPECT_EQ(plan[1].command, "prog a b");
}

TEST(LabPlan, RejectsAnEntryWithoutCommandAndANameUsedTwice) {
  auto empty = parse_plan("ok prog\nlonely +pool\n");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("line 2"), std::string::npos) << empty.error();
  EXPECT_NE(empty.error().message().find("'lonely' has no command"), std::string::npos) << empty.error();
  auto twice = parse_plan("a prog\nb prog\na other\n");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message().find("line 3: the name 'a' is used twice"), std::string::npos) << twice.error();
}

TEST(LabPlan, NeedsAreConditionsNotResources) {
  auto plan = check(parse_plan("igb +needs:IGB +pool prog $IGB\nplain prog\n"));
  EXPECT_EQ(plan[0].needs, (std::vector<std::string>{"IGB"}));
  EXPECT_EQ(plan[0].resources, (std::vector<std::string>{"pool"}));
  EXPECT_TRUE(plan[1].needs.empty());

  std::map<std::string, std::string, std::less<>> env{{"IGB", "0000:00:09.0"}};
  auto look = [&](std::string_view name) -> std::optional<std::string> {
    auto it = env.find(name);
    return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  EXPECT_FALSE(unmet_need(plan[0], look));
  EXPECT_FALSE(unmet_need(plan[1], look));
  env["IGB"] = "";
  EXPECT_EQ(unmet_need(plan[0], look), "$IGB is empty: this machine does not provide it");
  env["LAB_ABSENT_IGB"] = "QEMU 7.2.22 has no igb device";
  EXPECT_EQ(unmet_need(plan[0], look), "$IGB is empty: QEMU 7.2.22 has no igb device");
  env.erase("IGB");
  EXPECT_EQ(unmet_need(plan[0], look), "$IGB is empty: QEMU 7.2.22 has no igb device");

  for (const char* bad : {"x +needs: prog\n", "x +needs:1GB prog\n", "x +needs:I-GB prog\n"}) {
    auto rejected = parse_plan(bad);
    ASSERT_FALSE(rejected) << bad;
    EXPECT_NE(rejected.error().message().find("does not name a variable"), std::string::npos) << rejected.error();
  }
}

TEST(LabPlan, NamedDevicesFromVariablesAndLiterals) {
  EXPECT_EQ(named_devices("prog $EDU ${NVME} 0000:00:06.0 $EDU", lookup),
            (std::vector<std::string>{"0000:00:04.0", "0000:00:05.0", "0000:00:06.0"}));
  // ${X:+...} expansions name both the tested and the used variable.
  EXPECT_EQ(named_devices("prog ${A:+--same-group $A,$B}", lookup),
            (std::vector<std::string>{"0000:01:01.0", "0000:01:02.0"}));
  // Unset, empty and non-BDF variables, and hex runs that only look alike.
  EXPECT_TRUE(named_devices("prog $NOPE $EMPTY $WORD 10000:00:04.00 abc", lookup).empty());
  // Only the long form is a literal BDF.
  EXPECT_EQ(named_devices("prog 00:04.0", lookup), std::vector<std::string>{});
}

TEST(LabPlan, ResourcesAreGroupsPlusWords) {
  EXPECT_EQ(held("x prog $EDU"), (std::set<std::string>{"group:1"}));
  EXPECT_EQ(held("x prog $A"), (std::set<std::string>{"group:7"}));
  EXPECT_EQ(held("x +hugepages-1g prog $EDU $NVME"), (std::set<std::string>{"group:1", "group:2", "hugepages-1g"}));
  // A device without a group is held by its address.
  EXPECT_EQ(held("x prog 0000:00:09.0"), (std::set<std::string>{"device:0000:00:09.0"}));
  // No device named: alone, unless the entry says it needs none.
  EXPECT_EQ(held("x prog"), (std::set<std::string>{"alone"}));
  EXPECT_TRUE(held("x +nodevice prog").empty());
}

// Runs the scheduler to the end, starting what is ready and finishing the
// oldest running entry each round; returns the rounds' started sets.
std::vector<std::vector<std::size_t>> rounds(const std::vector<std::set<std::string>>& resources, std::size_t jobs) {
  Scheduler scheduler(resources, jobs);
  std::vector<std::vector<std::size_t>> started;
  std::vector<std::size_t> running;
  while (!scheduler.done()) {
    auto ready = scheduler.ready();
    for (auto entry : ready) {
      scheduler.started(entry);
      running.push_back(entry);
    }
    started.push_back(ready);
    if (running.empty()) {
      ADD_FAILURE() << "nothing runs and nothing is ready: the scheduler is stuck";
      break;
    }
    scheduler.finished(running.front());
    running.erase(running.begin());
  }
  return started;
}

TEST(LabPlan, SchedulerRunsDisjointEntriesTogether) {
  using R = std::vector<std::vector<std::size_t>>;
  // 0 and 1 share nothing: together. 2 waits for 0 (same group).
  EXPECT_EQ(rounds({{"group:1"}, {"group:2"}, {"group:1"}}, 2), (R{{0, 1}, {2}, {}}));
  // One job: strictly in plan order.
  EXPECT_EQ(rounds({{"group:1"}, {"group:2"}, {"group:3"}}, 1), (R{{0}, {1}, {2}}));
}

TEST(LabPlan, SchedulerKeepsPlanOrderPerResource) {
  using R = std::vector<std::vector<std::size_t>>;
  // 2 could run beside 0 but must not overtake 1, which shares group 2 with
  // it and is still waiting for group 1.
  EXPECT_EQ(rounds({{"group:1"}, {"group:1", "group:2"}, {"group:2"}}, 2), (R{{0}, {1}, {2}}));
  // An entry that shares nothing with the waiting ones may overtake them.
  EXPECT_EQ(rounds({{"group:1"}, {"group:1"}, {"group:3"}}, 2), (R{{0, 2}, {1}, {}}));
}

TEST(LabPlan, SchedulerRunsAloneEntriesAlone) {
  using R = std::vector<std::vector<std::size_t>>;
  // The alone entry waits for everything before it and holds back
  // everything after it.
  EXPECT_EQ(rounds({{"group:1"}, {"alone"}, {"group:2"}}, 2), (R{{0}, {1}, {2}}));
  // Entries without resources run beside anything but an alone one.
  EXPECT_EQ(rounds({{}, {"group:1"}, {}}, 3), (R{{0, 1, 2}, {}, {}}));
}

// A kselftest that gives up before its KTAP prints one line and exits 4:
// that line is the reason. A program with KTAP of its own says why there.
TEST(LabPlan, WholeSkipReasonIsTheLastLineWithoutKtap) {
  EXPECT_EQ(whole_skip_reason({"No driver found for device 0000:00:04.0", ""}),
            "No driver found for device 0000:00:04.0");
  EXPECT_EQ(whole_skip_reason({"first", "  second  "}), "second");
  EXPECT_EQ(whole_skip_reason({"KTAP version 1", "1..0 # SKIP no device"}), "");
  EXPECT_EQ(whole_skip_reason({"TAP version 13", "1..0 # SKIP no device"}), "");
  EXPECT_EQ(whole_skip_reason({}), "");
  // ksft_exit_skip() before the harness printed its header.
  EXPECT_EQ(whole_skip_reason({"1..0 # SKIP SR-IOV may not be supported by the PF: 0000:00:09.0", ""}),
            "SR-IOV may not be supported by the PF: 0000:00:09.0");
  EXPECT_EQ(whole_skip_reason({"1..0 # SKIP"}), "");
}

}  // namespace
}  // namespace vfiolab::lab
