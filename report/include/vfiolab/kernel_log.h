// Scanning a kernel log (console output or dmesg) for reports that mean the
// kernel misbehaved during a run: WARNING, BUG, Oops, KASAN, UBSAN, lockdep,
// panics, hung tasks, RCU stalls, and the leaks of a kmemleak scan (the
// lab's init copies /sys/kernel/debug/kmemleak to the console after the
// plan, each line after "kmemleak: "; a leak belongs to the programs whose
// name its "comm" starts, as it was allocated by them). Each report becomes one Finding with
// the log lines that show it, attributed to the program that was running
// (the lab's init writes "vfiolab: begin N NAME" / "vfiolab: end N NAME"
// markers into the log).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::kernel_log {

enum class Kind { warning, bug, oops, kasan, ubsan, lockdep, panic, hung_task, rcu_stall, kmemleak };

std::string_view kind_name(Kind kind);

struct Finding {
  Kind kind = Kind::warning;
  int line = 0;            // line number of the first line of the report
  std::string program;     // what was running ("A or B" when programs overlapped), or empty outside any program
  std::vector<std::string> lines;  // the report as logged, timestamps kept
};

// The message of a log line without its "[   12.345678] " timestamp or
// "<4>" level prefix.
std::string_view message_of(std::string_view line);

// Which kind of report a message starts, if any.
std::optional<Kind> classify(std::string_view message);

struct Marker {
  bool begin = false;
  int number = 0;
  std::string program;
};
std::optional<Marker> parse_marker(std::string_view message);

class Scanner {
 public:
  void feed_line(std::string_view line);
  std::vector<Finding> finish();

 private:
  void close_open();
  std::string allocated_by(const Finding& leak) const;

  std::vector<Finding> findings_;
  std::optional<Finding> open_;
  std::string program_;               // who a report belongs to
  std::vector<std::string> running_;  // programs begun and not ended
  std::vector<std::string> seen_;     // every program begun
  bool stack_ended_ = false;  // the open report's stack dump is complete
  int line_number_ = 0;
};

std::vector<Finding> scan(std::string_view log);

}  // namespace vfiolab::kernel_log
