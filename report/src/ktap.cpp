#include "vfiolab/ktap.h"

#include "vfiolab/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace vfiolab::ktap {
namespace {

constexpr std::size_t kIndentWidth = 4;
// Nesting deeper than this is treated as malformed, so hostile input cannot
// make the parser allocate without bound.
constexpr std::size_t kMaxDepth = 64;

using text::trim;

bool consume(std::string_view& text, std::string_view prefix) {
  if (!text.starts_with(prefix)) return false;
  text.remove_prefix(prefix.size());
  return true;
}

std::optional<int> parse_int(std::string_view text) {
  int value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

bool is_version_line(std::string_view text) {
  return text.starts_with("KTAP version ") || text.starts_with("TAP version ");
}

std::optional<int> parse_plan_line(std::string_view text) {
  if (!consume(text, "1..")) return std::nullopt;
  // "1..N # reason" is allowed by TAP; the count is what matters.
  auto space = text.find(' ');
  return parse_int(text.substr(0, space));
}

Directive directive_from(std::string_view word) {
  std::string upper(word);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (upper == "SKIP") return Directive::skip;
  if (upper == "TODO") return Directive::todo;
  if (upper == "XFAIL") return Directive::xfail;
  if (upper == "TIMEOUT") return Directive::timeout;
  if (upper == "ERROR") return Directive::error;
  return Directive::none;
}

}  // namespace

std::string_view directive_name(Directive directive) {
  switch (directive) {
    case Directive::none: return "";
    case Directive::skip: return "SKIP";
    case Directive::todo: return "TODO";
    case Directive::xfail: return "XFAIL";
    case Directive::timeout: return "TIMEOUT";
    case Directive::error: return "ERROR";
  }
  return "";
}

Outcome outcome(const Result& result) {
  switch (result.directive) {
    case Directive::skip:
    case Directive::todo: return Outcome::skip;
    case Directive::xfail: return Outcome::pass;
    case Directive::timeout:
    case Directive::error: return Outcome::fail;
    case Directive::none: break;
  }
  return result.ok ? Outcome::pass : Outcome::fail;
}

std::optional<ResultLine> parse_result_line(std::string_view text) {
  ResultLine out;
  if (consume(text, "not ok")) {
    out.ok = false;
  } else if (consume(text, "ok")) {
    out.ok = true;
  } else {
    return std::nullopt;
  }
  if (!text.empty() && text.front() != ' ') return std::nullopt;  // "okay ..." is not a result
  text = trim(text);

  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits > 0) {
    out.number = parse_int(text.substr(0, digits));
    text.remove_prefix(digits);
    if (!text.empty() && text.front() != ' ') return std::nullopt;
    text = trim(text);
  }

  std::string_view name = text;
  std::string_view directive_text;
  if (text.starts_with("#")) {
    name = {};
    directive_text = text.substr(1);
  } else if (auto hash = text.find(" #"); hash != std::string_view::npos) {
    name = text.substr(0, hash);
    directive_text = text.substr(hash + 2);
  }
  name = trim(name);
  if (name.starts_with("- ")) name = trim(name.substr(2));
  out.name = std::string(name);

  directive_text = trim(directive_text);
  if (!directive_text.empty()) {
    auto space = directive_text.find(' ');
    Directive directive = directive_from(directive_text.substr(0, space));
    if (directive != Directive::none) {
      out.directive = directive;
      out.reason = space == std::string_view::npos ? std::string() : std::string(trim(directive_text.substr(space)));
    } else {
      out.reason = std::string(directive_text);
    }
  }
  return out;
}

Parser::Parser(Callback on_result) : on_result_(std::move(on_result)) { frames_.emplace_back(); }

void Parser::problem(std::string message) { problems_.push_back({line_number_, std::move(message)}); }

void Parser::open_frames_to(std::size_t depth) {
  while (frames_.size() <= depth) {
    frames_.emplace_back();
    frames_.back().first_line = line_number_;
  }
}

void Parser::take_subtests(Frame& frame, Result& parent) {
  parent.subtests = std::move(frame.results);
  parent.plan = frame.plan;
  parent.diagnostics.insert(parent.diagnostics.begin(), frame.pending.begin(), frame.pending.end());
  if (frame.plan && static_cast<std::size_t>(*frame.plan) != parent.subtests.size()) {
    problem(fmt::format("'{}' planned {} subtests but reported {}", parent.name, *frame.plan,
                        parent.subtests.size()));
  }
}

// Fold frames until only `keep` remain: each folded block of subtests ended
// without a result line of its own, so it gets a synthesized failing one in
// its parent frame.
void Parser::fold_frames_to(std::size_t keep) {
  keep = std::max<std::size_t>(keep, 1);
  while (frames_.size() > keep) {
    Frame orphan = std::move(frames_.back());
    frames_.pop_back();
    Result made;
    made.synthesized = true;
    made.line = orphan.first_line;
    made.number = static_cast<int>(frames_.back().results.size()) + 1;
    made.name = "(incomplete)";
    made.reason = "subtests without a result line";
    problem(fmt::format("subtests starting at line {} have no result line", orphan.first_line));
    take_subtests(orphan, made);
    if (on_result_) on_result_(made, static_cast<int>(frames_.size()) - 1);
    frames_.back().results.push_back(std::move(made));
  }
}

void Parser::feed_line(std::string_view raw) {
  ++line_number_;
  while (!raw.empty() && (raw.back() == '\r' || raw.back() == '\n')) raw.remove_suffix(1);

  std::size_t spaces = 0;
  while (spaces < raw.size() && raw[spaces] == ' ') ++spaces;
  std::string_view text = raw.substr(spaces);
  if (trim(text).empty()) return;
  if (spaces % kIndentWidth != 0) {
    problem(fmt::format("indentation of {} spaces is not a multiple of {}", spaces, kIndentWidth));
  }
  std::size_t depth = spaces / kIndentWidth;
  if (depth > kMaxDepth) {
    problem(fmt::format("nesting deeper than {} levels; line kept as output", kMaxDepth));
    depth = kMaxDepth;
  }
  if (depth >= frames_.size() + 1) {
    problem(fmt::format("indentation jumps to depth {} from depth {}", depth, frames_.size() - 1));
  }

  if (auto parsed = parse_result_line(text)) {
    fold_frames_to(depth + 2);
    open_frames_to(depth);
    Frame& frame = frames_[depth];
    Result result;
    result.ok = parsed->ok;
    result.name = std::move(parsed->name);
    result.directive = parsed->directive;
    result.reason = std::move(parsed->reason);
    result.line = line_number_;
    result.diagnostics = std::move(frame.pending);
    frame.pending.clear();
    int expected = static_cast<int>(frame.results.size()) + 1;
    result.number = parsed->number.value_or(expected);
    if (!parsed->number) {
      problem(fmt::format("result '{}' has no test number", result.name));
    } else if (*parsed->number != expected) {
      problem(fmt::format("result '{}' is numbered {}, expected {}", result.name, *parsed->number, expected));
    }
    if (frames_.size() > depth + 1) {
      Frame children = std::move(frames_[depth + 1]);
      frames_.resize(depth + 1);
      take_subtests(children, result);
    }
    if (on_result_) on_result_(result, static_cast<int>(depth));
    frames_[depth].results.push_back(std::move(result));
    return;
  }

  if (is_version_line(text)) {
    if (depth < frames_.size() && (frames_[depth].has_version || !frames_[depth].results.empty())) {
      if (depth == 0) {
        problem("a second version line at top level");
        return;
      }
      // A new block of subtests began before the previous one got its
      // parent's result line.
      fold_frames_to(depth);
    }
    open_frames_to(depth);
    frames_[depth].has_version = true;
    if (frames_[depth].first_line == 0) frames_[depth].first_line = line_number_;
    return;
  }

  if (auto count = parse_plan_line(text)) {
    open_frames_to(depth);
    Frame& frame = frames_[depth];
    if (frame.plan) {
      problem(fmt::format("a second plan line (first at line {})", frame.plan_line));
    } else {
      frame.plan = *count;
      frame.plan_line = line_number_;
    }
    return;
  }

  // A diagnostic ("# ...") or any other output: kept for the next result at
  // this depth.
  open_frames_to(depth);
  frames_[depth].pending.emplace_back(text);
}

void Parser::feed(std::string_view text) {
  partial_.append(text);
  std::size_t start = 0;
  for (auto newline = partial_.find('\n'); newline != std::string::npos;
       newline = partial_.find('\n', start)) {
    feed_line(std::string_view(partial_).substr(start, newline - start));
    start = newline + 1;
  }
  partial_.erase(0, start);
}

Document Parser::finish() {
  if (!partial_.empty()) {
    std::string last = std::move(partial_);
    partial_.clear();
    feed_line(last);
  }
  fold_frames_to(1);

  Document document;
  Frame& top = frames_[0];
  document.has_version = top.has_version;
  document.plan = top.plan;
  document.results = std::move(top.results);
  document.diagnostics = std::move(top.pending);
  if (!document.has_version && !document.results.empty()) {
    problems_.push_back({0, "no 'KTAP version 1' line"});
  }
  if (document.plan && static_cast<std::size_t>(*document.plan) != document.results.size()) {
    problems_.push_back({0, fmt::format("planned {} results, got {}", *document.plan, document.results.size())});
  }
  document.problems = std::move(problems_);
  frames_.clear();
  frames_.emplace_back();
  problems_.clear();
  line_number_ = 0;
  return document;
}

Document parse(std::string_view text) {
  Parser parser;
  parser.feed(text);
  return parser.finish();
}

Counts& Counts::operator+=(const Counts& other) {
  passed += other.passed;
  failed += other.failed;
  skipped += other.skipped;
  return *this;
}

Counts count(const Result& result) {
  Counts counts;
  if (result.subtests.empty()) {
    switch (outcome(result)) {
      case Outcome::pass: counts.passed = 1; break;
      case Outcome::fail: counts.failed = 1; break;
      case Outcome::skip: counts.skipped = 1; break;
    }
    return counts;
  }
  for (const Result& subtest : result.subtests) counts += count(subtest);
  if (outcome(result) == Outcome::fail && counts.failed == 0) counts.failed = 1;
  return counts;
}

int exit_code(const Counts& counts) {
  if (counts.failed > 0) return kExitFail;
  if (counts.passed == 0 && counts.skipped > 0) return kExitSkip;
  return kExitPass;
}

int Writer::finish() {
  fmt::print(out_, "# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:0\n", counts_.passed, counts_.failed,
             counts_.skipped);
  std::fflush(out_);
  return exit_code(counts_);
}

Writer::Writer(std::FILE* out, int depth) : out_(out), indent_(static_cast<std::size_t>(depth) * kIndentWidth, ' ') {}

void Writer::line(std::string_view text) {
  fmt::print(out_, "{}{}\n", indent_, text);
  std::fflush(out_);
}

void Writer::header() { line("KTAP version 1"); }

void Writer::plan(int count) { line(fmt::format("1..{}", count)); }

void Writer::diagnostic(std::string_view text) {
  // Every line of a multi-line message becomes its own diagnostic line.
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find('\n', start);
    std::string_view piece = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    line(piece.empty() ? std::string("#") : fmt::format("# {}", piece));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
}

void Writer::result(bool ok, std::string_view name, Directive directive, std::string_view reason) {
  ++number_;
  Result counted;
  counted.ok = ok;
  counted.directive = directive;
  switch (outcome(counted)) {
    case Outcome::pass: ++counts_.passed; break;
    case Outcome::fail: ++counts_.failed; break;
    case Outcome::skip: ++counts_.skipped; break;
  }
  std::string text = fmt::format("{} {} {}", ok ? "ok" : "not ok", number_, name);
  if (directive != Directive::none) {
    text += fmt::format(" # {}", directive_name(directive));
    if (!reason.empty()) text += fmt::format(" {}", reason);
  }
  line(text);
}

void Writer::fail(std::string_view name, std::string_view reason) {
  if (!reason.empty()) diagnostic(reason);
  result(false, name);
}

void Writer::skip(std::string_view name, std::string_view reason) {
  result(true, name, Directive::skip, reason);
}

void Writer::relay(std::string_view text) {
  line(text.starts_with('#') ? std::string(text) : fmt::format("# {}", text));
}

int Writer::skip_all(std::string_view reason) {
  plan(0);
  diagnostic(reason);
  finish();
  return kExitSkip;
}

}  // namespace vfiolab::ktap
