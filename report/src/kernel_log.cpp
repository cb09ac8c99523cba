#include "vfiolab/kernel_log.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <utility>

namespace vfiolab::kernel_log {
namespace {

// A report longer than this is cut: enough for a trace, bounded for a
// runaway log.
constexpr std::size_t kMaxReportLines = 80;

struct Rule {
  std::string_view prefix;
  std::string_view contains;  // also required somewhere in the message, if set
  Kind kind;
};

// Order matters: the first rule whose prefix (and substring) matches wins,
// so specific reports come before the generic WARNING and BUG.
constexpr std::array kRules{
    Rule{"BUG: KASAN:", "", Kind::kasan},
    Rule{"KASAN:", "", Kind::kasan},
    Rule{"UBSAN:", "", Kind::ubsan},
    Rule{"WARNING: possible circular locking dependency", "", Kind::lockdep},
    Rule{"WARNING: possible recursive locking", "", Kind::lockdep},
    Rule{"WARNING: inconsistent lock state", "", Kind::lockdep},
    Rule{"WARNING: suspicious RCU usage", "", Kind::lockdep},
    Rule{"WARNING: bad unlock balance detected", "", Kind::lockdep},
    Rule{"WARNING: held lock freed", "", Kind::lockdep},
    Rule{"WARNING: lock held when returning to user space", "", Kind::lockdep},
    Rule{"WARNING: possible irq lock inversion dependency", "", Kind::lockdep},
    Rule{"INFO: possible irq lock inversion dependency", "", Kind::lockdep},
    Rule{"Kernel panic - not syncing", "", Kind::panic},
    Rule{"kmemleak: unreferenced object", "", Kind::kmemleak},
    Rule{"Oops:", "", Kind::oops},
    Rule{"general protection fault", "", Kind::oops},
    Rule{"kernel BUG at", "", Kind::bug},
    Rule{"BUG:", "", Kind::bug},
    Rule{"WARNING:", "", Kind::warning},
    Rule{"INFO: task ", "blocked for more than", Kind::hung_task},
    Rule{"rcu: INFO:", "stall", Kind::rcu_stall},
    Rule{"INFO: rcu_", "stall", Kind::rcu_stall},
};

bool ends_report(std::string_view message) {
  return message.starts_with("---[ end trace") || message.starts_with("---[ end Kernel panic");
}

}  // namespace

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::warning: return "WARNING";
    case Kind::bug: return "BUG";
    case Kind::oops: return "Oops";
    case Kind::kasan: return "KASAN";
    case Kind::ubsan: return "UBSAN";
    case Kind::lockdep: return "lockdep";
    case Kind::panic: return "panic";
    case Kind::hung_task: return "hung task";
    case Kind::rcu_stall: return "RCU stall";
    case Kind::kmemleak: return "kmemleak";
  }
  return "?";
}

std::string_view message_of(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  // "<4>" from /dev/kmsg or dmesg -r.
  if (line.size() >= 3 && line[0] == '<') {
    auto close = line.find('>');
    if (close != std::string_view::npos && close <= 4) line.remove_prefix(close + 1);
  }
  // "[    1.234567] " (PRINTK_TIME), possibly followed by "[    T1] " or
  // "[  C0] " (PRINTK_CALLER).
  for (int i = 0; i < 2 && line.starts_with("["); ++i) {
    auto close = line.find(']');
    if (close == std::string_view::npos || close > 24) break;
    line.remove_prefix(close + 1);
    if (line.starts_with(" ")) line.remove_prefix(1);
  }
  return line;
}

std::optional<Kind> classify(std::string_view message) {
  for (const Rule& rule : kRules) {
    if (message.starts_with(rule.prefix) &&
        (rule.contains.empty() || message.find(rule.contains) != std::string_view::npos)) {
      return rule.kind;
    }
  }
  return std::nullopt;
}

std::optional<Marker> parse_marker(std::string_view message) {
  constexpr std::string_view kTag = "vfiolab: ";
  if (!message.starts_with(kTag)) return std::nullopt;
  message.remove_prefix(kTag.size());
  Marker marker;
  if (message.starts_with("begin ")) {
    marker.begin = true;
    message.remove_prefix(6);
  } else if (message.starts_with("end ")) {
    message.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  auto space = message.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  auto [end, error] = std::from_chars(message.data(), message.data() + space, marker.number);
  if (error != std::errc() || end != message.data() + space) return std::nullopt;
  message.remove_prefix(space + 1);
  marker.program = std::string(message.substr(0, message.find(' ')));
  if (marker.program.empty()) return std::nullopt;
  return marker;
}

// A leak's "comm" is the allocating task's name, cut to 15 characters: the
// programs whose command it starts (a plan name "vfio_fail_nth_test:map"
// runs vfio_fail_nth_test, comm "vfio_fail_nth_t").
std::string Scanner::allocated_by(const Finding& leak) const {
  for (const auto& line : leak.lines) {
    const auto at = line.find("comm \"");
    if (at == std::string::npos) continue;
    const auto end = line.find('"', at + 6);
    const std::string comm = line.substr(at + 6, end == std::string::npos ? std::string::npos : end - at - 6);
    std::string programs;
    for (const auto& name : seen_) {
      if (!comm.empty() && name.substr(0, name.find(':')).starts_with(comm))
        programs += (programs.empty() ? "" : " or ") + name;
    }
    return programs;
  }
  return {};
}

void Scanner::close_open() {
  if (open_ && open_->kind == Kind::kmemleak && open_->program.empty()) open_->program = allocated_by(*open_);
  if (open_) findings_.push_back(std::move(*open_));
  open_.reset();
  stack_ended_ = false;
}

void Scanner::feed_line(std::string_view line) {
  ++line_number_;
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  std::string_view message = message_of(line);

  if (auto marker = parse_marker(message)) {
    close_open();
    // Programs may overlap (the lab runs some at the same time): a report
    // belongs to every program running when it appeared.
    auto at = std::find(running_.begin(), running_.end(), marker->program);
    if (marker->begin && at == running_.end()) running_.push_back(marker->program);
    if (marker->begin && std::find(seen_.begin(), seen_.end(), marker->program) == seen_.end())
      seen_.push_back(marker->program);
    if (!marker->begin && at != running_.end()) running_.erase(at);
    program_.clear();
    for (const auto& name : running_) program_ += (program_.empty() ? "" : " or ") + name;
    return;
  }

  // A leak's lines all carry the "kmemleak: " tag; each object is a report.
  if (open_ && open_->kind == Kind::kmemleak &&
      (!message.starts_with("kmemleak: ") || message.starts_with("kmemleak: unreferenced object"))) {
    close_open();
  }
  if (open_ && stack_ended_ && !ends_report(message)) {
    // A report whose stack dump ended with no "end trace" line after it.
    close_open();
  }
  if (open_) {
    // A report inside a report (the WARNING inside a lockdep splat) belongs
    // to the one already open.
    open_->lines.emplace_back(line);
    if (message.find("</TASK>") != std::string_view::npos) stack_ended_ = true;
    if (ends_report(message) || open_->lines.size() >= kMaxReportLines) close_open();
    return;
  }

  if (auto kind = classify(message)) {
    open_ = Finding{*kind, line_number_, program_, {std::string(line)}};
    if (ends_report(message)) close_open();
  }
}

std::vector<Finding> Scanner::finish() {
  close_open();
  line_number_ = 0;
  program_.clear();
  running_.clear();
  seen_.clear();
  return std::exchange(findings_, {});
}

std::vector<Finding> scan(std::string_view log) {
  Scanner scanner;
  std::size_t start = 0;
  while (start < log.size()) {
    auto end = log.find('\n', start);
    if (end == std::string_view::npos) end = log.size();
    scanner.feed_line(log.substr(start, end - start));
    start = end + 1;
  }
  return scanner.finish();
}

}  // namespace vfiolab::kernel_log
