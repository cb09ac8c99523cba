// The live view of a lab run and its timing: reads the progress lines the
// guest's plan runner writes (lab/runner/main.cpp: plan, start, out, end),
// prints each program's results as they arrive, and keeps how long the
// boot, each program and each test took.
#pragma once

#include "vfiolab/ktap.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::lab {

struct TestTime {
  std::string program;
  std::string test;
  double seconds = 0;
  ktap::Outcome outcome = ktap::Outcome::pass;
};

struct ProgramTime {
  std::string name;
  double started = 0;   // host seconds since the run started
  double seconds = 0;   // as the guest measured it
  std::string status;   // exit status, or "timeout"; empty if it never ended
  ktap::Counts counts;
};

class Progress {
 public:
  // `print` gets each line of the live view; `verbose` shows every output
  // line, not only results.
  Progress(std::function<void(const std::string&)> print, bool verbose);
  ~Progress();

  // One progress line, received `now` seconds after the run started.
  void feed(std::string_view line, double now);

  std::optional<double> boot_seconds() const { return boot_; }
  const std::vector<ProgramTime>& programs() const { return programs_; }
  const std::vector<TestTime>& tests() const { return tests_; }
  double plan_seconds() const;

  // The table for people: boot, each program (in the order they started)
  // and the slowest tests.
  std::string table(std::size_t slowest) const;
  // Every test, one per line: program, test, seconds, outcome (tab-separated).
  std::string tests_tsv() const;

 private:
  struct Running;
  std::string stamp(double now) const;
  void on_result(const std::string& program, const ktap::Result& result, double now);

  std::function<void(const std::string&)> print_;
  bool verbose_;
  std::optional<double> boot_;
  std::optional<double> last_end_;
  double current_ = 0;  // when the line being fed arrived
  std::size_t jobs_ = 1;
  std::map<std::string, std::unique_ptr<Running>, std::less<>> running_;
  std::vector<ProgramTime> programs_;
  std::vector<TestTime> tests_;
};

}  // namespace vfiolab::lab
