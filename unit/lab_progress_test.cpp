// The live view and timing of a lab run, fed the guest's progress lines with
// made-up arrival times.
#include "progress.h"

#include <gtest/gtest.h>

namespace vfiolab::lab {
namespace {

TEST(LabProgress, TimesBootProgramsAndTests) {
  std::vector<std::string> shown;
  Progress progress([&](const std::string& line) { shown.push_back(line); }, false);
  progress.feed("plan\t2\t2\t1.50", 3.0);
  progress.feed("start\tprobe\t1.60", 3.1);
  progress.feed("start\tmapping\t1.60", 3.1);
  progress.feed("out\tprobe\tKTAP version 1", 3.2);
  progress.feed("out\tprobe\t1..2", 3.2);
  progress.feed("out\tmapping\tKTAP version 1", 3.3);
  progress.feed("out\tprobe\tok 1 open", 4.1);
  progress.feed("out\tmapping\t1..1", 4.2);
  progress.feed("out\tmapping\tnot ok 1 map", 6.1);
  progress.feed("out\tprobe\tok 2 map # SKIP no hugepages", 7.1);
  progress.feed("end\tprobe\t0\t4.000", 7.2);
  progress.feed("end\tmapping\t1\t3.100", 8.0);

  ASSERT_TRUE(progress.boot_seconds());
  EXPECT_DOUBLE_EQ(*progress.boot_seconds(), 3.0);
  EXPECT_DOUBLE_EQ(progress.plan_seconds(), 5.0);

  ASSERT_EQ(progress.programs().size(), 2u);
  const auto& probe = progress.programs()[0];
  EXPECT_EQ(probe.name, "probe");
  EXPECT_EQ(probe.status, "0");
  EXPECT_DOUBLE_EQ(probe.seconds, 4.0);
  EXPECT_EQ(probe.counts.passed, 1);
  EXPECT_EQ(probe.counts.skipped, 1);
  const auto& mapping = progress.programs()[1];
  EXPECT_EQ(mapping.counts.failed, 1);

  // Each test's time runs from its program's start or previous result.
  ASSERT_EQ(progress.tests().size(), 3u);
  EXPECT_EQ(progress.tests()[0].test, "open");
  EXPECT_NEAR(progress.tests()[0].seconds, 1.0, 1e-9);
  EXPECT_EQ(progress.tests()[1].program, "mapping");
  EXPECT_NEAR(progress.tests()[1].seconds, 3.0, 1e-9);
  EXPECT_EQ(progress.tests()[1].outcome, ktap::Outcome::fail);
  EXPECT_NEAR(progress.tests()[2].seconds, 3.0, 1e-9);
  EXPECT_EQ(progress.tests()[2].outcome, ktap::Outcome::skip);

  // Two at a time: results name their program.
  EXPECT_NE(std::find(shown.begin(), shown.end(), "[   4.1s]   probe: ok open"), shown.end());
  EXPECT_NE(std::find(shown.begin(), shown.end(), "[   8.0s] not ok mapping (0 passed, 1 failed, 0 skipped) in 3.1 s"),
            shown.end());

  std::string table = progress.table(2);
  EXPECT_NE(table.find("boot 3.0 s"), std::string::npos) << table;
  EXPECT_NE(table.find("plan 5.0 s; program time 7.1 s (1.42 programs at a time"), std::string::npos) << table;
  EXPECT_NE(table.find("3.00 s  mapping: map"), std::string::npos) << table;
  EXPECT_EQ(progress.tests_tsv(),
            "program\ttest\tseconds\toutcome\nprobe\topen\t1.000\tpass\nmapping\tmap\t3.000\tfail\n"
            "probe\tmap\t3.000\tskip\n");
}

TEST(LabProgress, AProgramThatNeverEndsIsShownSo) {
  Progress progress([](const std::string&) {}, false);
  progress.feed("plan\t1\t1\t1.0", 2.0);
  progress.feed("start\thang\t1.1", 2.1);
  progress.feed("garbage line", 2.2);
  progress.feed("out\tunknown\tok 1 x", 2.3);
  ASSERT_EQ(progress.programs().size(), 1u);
  EXPECT_TRUE(progress.programs()[0].status.empty());
  EXPECT_NE(progress.table(5).find("(never ended)"), std::string::npos);
  EXPECT_TRUE(progress.tests().empty());
}

}  // namespace
}  // namespace vfiolab::lab
