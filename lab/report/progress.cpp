#include "progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace vfiolab::lab {
namespace {

// The line's tab-separated fields; the last one keeps any further tabs.
std::vector<std::string_view> fields(std::string_view line, std::size_t count) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < count) {
    auto tab = line.find('\t');
    if (tab == std::string_view::npos) break;
    parts.push_back(line.substr(0, tab));
    line.remove_prefix(tab + 1);
  }
  parts.push_back(line);
  return parts;
}

double number(std::string_view text) {
  double value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

std::string outcome_name(ktap::Outcome outcome) {
  switch (outcome) {
    case ktap::Outcome::pass: return "pass";
    case ktap::Outcome::fail: return "fail";
    case ktap::Outcome::skip: return "skip";
  }
  return "";
}

std::string result_text(const ktap::Result& result) {
  std::string text = fmt::format("{} {}", result.ok ? "ok" : "not ok", result.name);
  if (result.directive != ktap::Directive::none) {
    text += fmt::format(" # {}", ktap::directive_name(result.directive));
    if (!result.reason.empty()) text += " " + result.reason;
  }
  return text;
}

}  // namespace

struct Progress::Running {
  std::size_t index = 0;  // into programs_
  double last = 0;        // when its previous test (or the program) ended or started
  ktap::Parser parser;
};

Progress::Progress(std::function<void(const std::string&)> print, bool verbose)
    : print_(std::move(print)), verbose_(verbose) {}

Progress::~Progress() = default;

std::string Progress::stamp(double now) const { return fmt::format("[{:6.1f}s]", now); }

void Progress::on_result(const std::string& program, const ktap::Result& result, double now) {
  auto& running = *running_.find(program)->second;
  tests_.push_back({program, result.name, now - running.last, ktap::outcome(result)});
  running.last = now;
  if (!verbose_) {
    print_(fmt::format("{}   {}{}", stamp(now), jobs_ > 1 ? program + ": " : "", result_text(result)));
  }
}

void Progress::feed(std::string_view line, double now) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  auto kind = line.substr(0, line.find('\t'));
  if (kind == "plan") {
    auto f = fields(line, 4);
    if (f.size() < 3) return;
    boot_ = now;
    jobs_ = std::max<std::size_t>(1, static_cast<std::size_t>(number(f[2])));
    print_(fmt::format("{} lab: guest up; {} program(s), up to {} at a time", stamp(now), f[1], jobs_));
  } else if (kind == "start") {
    auto f = fields(line, 3);
    if (f.size() < 2) return;
    std::string name(f[1]);
    auto running = std::make_unique<Running>();
    running->index = programs_.size();
    running->last = now;
    running->parser = ktap::Parser([this, name](const ktap::Result& result, int depth) {
      if (depth == 0) on_result(name, result, current_);
    });
    programs_.push_back({name, now, 0, "", {}});
    running_[name] = std::move(running);
    if (jobs_ > 1 || verbose_) print_(fmt::format("{} start {}", stamp(now), name));
  } else if (kind == "out") {
    auto f = fields(line, 3);
    if (f.size() < 3) return;
    auto it = running_.find(f[1]);
    if (it == running_.end()) return;
    if (verbose_) print_(fmt::format("{} {}{}", stamp(now), jobs_ > 1 ? std::string(f[1]) + "| " : "", f[2]));
    current_ = now;
    it->second->parser.feed_line(f[2]);
  } else if (kind == "end") {
    auto f = fields(line, 4);
    if (f.size() < 4) return;
    auto it = running_.find(f[1]);
    if (it == running_.end()) return;
    current_ = now;
    ktap::Document document = it->second->parser.finish();
    ProgramTime& program = programs_[it->second->index];
    program.seconds = number(f[3]);
    program.status = std::string(f[2]);
    for (const auto& result : document.results) program.counts += ktap::count(result);
    // The status as the plan runner sent it: a kselftest exit code, or
    // something else (a signal's name) that is shown as it is.
    const auto is = [&](int code) { return program.status == std::to_string(code); };
    std::string verdict = is(ktap::kExitPass) || is(ktap::kExitSkip) ? "ok" : "not ok";
    print_(fmt::format("{} {} {} ({} passed, {} failed, {} skipped) in {:.1f} s{}", stamp(now), verdict, program.name,
                       program.counts.passed, program.counts.failed, program.counts.skipped, program.seconds,
                       is(ktap::kExitPass) || is(ktap::kExitSkip) || is(ktap::kExitFail)
                           ? ""
                           : fmt::format(" (exit status {})", program.status)));
    running_.erase(it);
    last_end_ = now;
  }
}

double Progress::plan_seconds() const {
  if (!boot_ || !last_end_) return 0;
  return *last_end_ - *boot_;
}

std::string Progress::table(std::size_t slowest) const {
  std::string text;
  std::size_t width = 30;
  for (const auto& p : programs_) width = std::max(width, p.name.size() + 1);
  text += fmt::format("{:<{}} {:>9} {:>9}  {}\n", "program", width, "start s", "seconds", "passed/failed/skipped");
  double busy = 0;
  for (const auto& p : programs_) {
    text += fmt::format("{:<{}} {:>9.1f} {:>9.1f}  {}/{}/{}{}\n", p.name, width, p.started - boot_.value_or(0),
                        p.seconds, p.counts.passed, p.counts.failed, p.counts.skipped,
                        p.status.empty() ? "  (never ended)" : "");
    busy += p.seconds;
  }
  text += fmt::format("boot {:.1f} s (QEMU start to the plan's start); plan {:.1f} s; program time {:.1f} s ({:.2f} "
                      "programs at a time on average)\n",
                      boot_.value_or(0), plan_seconds(), busy, plan_seconds() > 0 ? busy / plan_seconds() : 0.0);
  if (slowest > 0 && !tests_.empty()) {
    std::vector<const TestTime*> order;
    for (const auto& t : tests_) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->seconds > b->seconds; });
    text += fmt::format("slowest tests:\n");
    for (std::size_t i = 0; i < std::min(slowest, order.size()); ++i) {
      text += fmt::format("  {:>7.2f} s  {}: {}\n", order[i]->seconds, order[i]->program, order[i]->test);
    }
  }
  return text;
}

std::string Progress::tests_tsv() const {
  std::string text = "program\ttest\tseconds\toutcome\n";
  for (const auto& t : tests_) text += fmt::format("{}\t{}\t{:.3f}\t{}\n", t.program, t.test, t.seconds, outcome_name(t.outcome));
  return text;
}

}  // namespace vfiolab::lab
