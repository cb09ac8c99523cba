#include "expect.h"

#include "vfiolab/text.h"

#include <fmt/format.h>

#include <cctype>
#include <map>
#include <set>

namespace vfiolab::lab {
namespace {

// A malformed expectations line: no syscall failed, so no errno.
std::unexpected<Error> bad(std::string what) {
  return std::unexpected(make_error(0, "parse expectations", std::move(what)));
}

using text::next_word;
using text::trim;

// A test's name as one word of an ID, which an expectations line can name:
// white space and '/' become '_', and no name becomes "(unnamed)".
std::string id_word(std::string_view name) {
  if (name.empty()) return "(unnamed)";
  std::string word(name);
  for (char& c : word) {
    if (c == '/' || std::isspace(static_cast<unsigned char>(c))) c = '_';
  }
  return word;
}

// What stands for the reason of a SKIP that gave none: an expectations
// line must say one.
constexpr std::string_view kNoReason = "(no reason given)";

void collect(const std::vector<ktap::Result>& results, const std::string& parent, std::vector<Leaf>& out) {
  std::set<std::string> taken;
  for (const auto& result : results) {
    const std::string word = id_word(result.name);
    std::string name = word;
    for (int n = 2; !taken.insert(name).second; ++n) name = fmt::format("{}#{}", word, n);
    const std::string id = parent.empty() ? name : parent + "/" + name;
    const ktap::Outcome outcome = ktap::outcome(result);
    collect(result.subtests, id, out);
    // A result with tests of its own is one of them only when it failed
    // without any of them failing.
    if (!result.subtests.empty()) {
      int failed_below = 0;
      for (const auto& subtest : result.subtests) failed_below += ktap::count(subtest).failed;
      if (outcome != ktap::Outcome::fail || failed_below > 0) continue;
    }
    std::string reason;
    if (outcome == ktap::Outcome::skip) reason = result.reason.empty() ? std::string(kNoReason) : result.reason;
    out.push_back({id, outcome, std::move(reason)});
  }
}

// The ID of the suite entry a fast-tier entry was split from: the last
// ":suffix" of the program's name dropped ("a:edu:blocked/t" -> "a:edu/t",
// "a:edu:blocked" -> "a:edu" for the program itself), or nothing for a
// program whose name has no suffix after its device.
std::string split_from(std::string_view id) {
  const auto slash = id.find('/');
  const std::string_view program = id.substr(0, slash);
  const auto first = program.find(':');
  const auto last = program.rfind(':');
  if (first == std::string_view::npos || first == last) return {};
  return std::string(program.substr(0, last)) + std::string(id.substr(program.size()));
}

std::string_view kind_name(Expectation::Kind kind) {
  switch (kind) {
    case Expectation::Kind::fail: return "fail";
    case Expectation::Kind::flaky: return "flaky";
    case Expectation::Kind::skip: return "skip";
    case Expectation::Kind::report: return "report";
  }
  return "?";
}

}  // namespace

std::vector<Leaf> leaves(const ktap::Document& document) {
  std::vector<Leaf> out;
  collect(document.results, "", out);
  return out;
}

Result<std::vector<Expectation>> parse_expectations(std::string_view text) {
  std::vector<Expectation> entries;
  std::map<std::string, int, std::less<>> lines;
  int number = 0;
  while (!text.empty()) {
    auto end = text.find('\n');
    std::string_view line = trim(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++number;
    if (line.empty() || line.front() == '#') continue;
    Expectation entry;
    entry.line = number;
    std::string_view kind = next_word(line);
    if (kind == "fail") {
      entry.kind = Expectation::Kind::fail;
    } else if (kind == "flaky") {
      entry.kind = Expectation::Kind::flaky;
    } else if (kind == "skip") {
      entry.kind = Expectation::Kind::skip;
    } else if (kind == "report") {
      entry.kind = Expectation::Kind::report;
    } else {
      return bad(fmt::format("line {}: '{}' is not fail, flaky, skip or report", number, kind));
    }
    entry.id = std::string(next_word(line));
    entry.text = std::string(trim(line));
    if (entry.id.empty()) return bad(fmt::format("line {}: '{}' names no test", number, kind));
    if (entry.kind == Expectation::Kind::report) {
      const auto slash = entry.id.rfind('/');
      if (slash == std::string::npos || slash == 0 || slash + 1 == entry.id.size())
        return bad(fmt::format("line {}: report {} is not PROGRAM/WORD", number, entry.id));
    }
    if (entry.text.empty()) {
      return bad(fmt::format("line {}: {} {} has no {}", number, kind, entry.id,
                                         entry.kind == Expectation::Kind::skip ? "reason" : "evidence"));
    }
    if (auto [it, added] = lines.emplace(entry.id, number); !added) {
      return bad(fmt::format("line {}: {} is already listed on line {}", number, entry.id, it->second));
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

Verdict check(const std::vector<Leaf>& run, const std::vector<Expectation>& expected, Scope scope) {
  std::map<std::string, const Expectation*, std::less<>> by_id;
  for (const auto& entry : expected) {
    if (entry.kind != Expectation::Kind::report) by_id.emplace(entry.id, &entry);
  }
  std::map<std::string, bool, std::less<>> met;

  Verdict verdict;
  for (const auto& leaf : run) {
    auto it = by_id.find(leaf.id);
    if (it == by_id.end() && scope == Scope::part) {
      if (const std::string origin = split_from(leaf.id); !origin.empty()) it = by_id.find(origin);
    }
    const Expectation* entry = it == by_id.end() ? nullptr : it->second;
    if (entry) met[entry->id] = true;
    auto listed_as = [&] {
      return fmt::format("listed as {} on line {}: {}", entry->kind == Expectation::Kind::skip ? "a SKIP" : "failing",
                         entry->line, entry->text);
    };
    switch (leaf.outcome) {
      case ktap::Outcome::pass:
        if (!entry || entry->kind == Expectation::Kind::flaky) {
          ++verdict.passed;
        } else if (entry->kind == Expectation::Kind::fail) {
          verdict.problems.push_back(fmt::format("stale: {} passed, {}", leaf.id, listed_as()));
        } else {
          verdict.problems.push_back(fmt::format("SKIP gone: {} passed, {}", leaf.id, listed_as()));
        }
        break;
      case ktap::Outcome::fail:
        if (entry && entry->kind != Expectation::Kind::skip) {
          verdict.known_failures.push_back(leaf.id);
        } else if (entry) {
          verdict.problems.push_back(fmt::format("SKIP gone: {} failed, {}", leaf.id, listed_as()));
        } else {
          verdict.problems.push_back(fmt::format("failed, not listed: {}", leaf.id));
        }
        break;
      case ktap::Outcome::skip:
        if (!entry) {
          verdict.problems.push_back(fmt::format("new SKIP: {}: {}", leaf.id, leaf.reason));
        } else if (entry->kind != Expectation::Kind::skip) {
          verdict.problems.push_back(fmt::format("stale: {} skipped ({}), {}", leaf.id, leaf.reason, listed_as()));
        } else if (entry->text != leaf.reason) {
          verdict.problems.push_back(
              fmt::format("SKIP reason changed: {}: now '{}', line {} says '{}'", leaf.id, leaf.reason, entry->line,
                          entry->text));
        } else {
          ++verdict.skipped;
        }
        break;
    }
  }
  for (const auto& entry : expected) {
    if (met.contains(entry.id) || scope == Scope::part || entry.kind == Expectation::Kind::report) continue;
    verdict.problems.push_back(fmt::format("{}: {} (line {}, {}) did not run",
                                           entry.kind == Expectation::Kind::skip ? "SKIP gone" : "stale", entry.id,
                                           entry.line, kind_name(entry.kind)));
  }
  return verdict;
}

ReportVerdict check_reports(const std::vector<kernel_log::Finding>& findings,
                            const std::vector<Expectation>& expected, Scope scope) {
  ReportVerdict verdict;
  std::map<std::string, bool, std::less<>> met;
  for (const auto& finding : findings) {
    const Expectation* match = nullptr;
    for (const auto& entry : expected) {
      if (entry.kind != Expectation::Kind::report) continue;
      const auto slash = entry.id.rfind('/');
      const std::string program = entry.id.substr(0, slash), word = entry.id.substr(slash + 1);
      // "A or B" when programs overlapped: any of them.
      bool during = false;
      for (std::string_view rest = finding.program; !rest.empty();) {
        const auto sep = rest.find(" or ");
        during = during || rest.substr(0, sep) == program;
        rest = sep == std::string_view::npos ? std::string_view{} : rest.substr(sep + 4);
      }
      const bool has_word = std::any_of(finding.lines.begin(), finding.lines.end(),
                                        [&](const std::string& line) { return line.find(word) != std::string::npos; });
      if (during && has_word) {
        match = &entry;
        break;
      }
    }
    const std::string what = fmt::format("kernel {} {} (kernel log line {}): {}", kernel_log::kind_name(finding.kind),
                                         finding.program.empty() ? "outside any program" : "during " + finding.program,
                                         finding.line, finding.lines.empty() ? "" : finding.lines.front());
    if (match) {
      met[match->id] = true;
      verdict.known.push_back(fmt::format("{} (listed: {}, line {})", what, match->id, match->line));
    } else {
      verdict.problems.push_back(what);
    }
  }
  for (const auto& entry : expected) {
    if (entry.kind != Expectation::Kind::report || met.contains(entry.id) || scope == Scope::part) continue;
    verdict.problems.push_back(fmt::format("stale: report {} (line {}) matched no kernel report", entry.id, entry.line));
  }
  return verdict;
}

std::string draft_expectations(const std::vector<Leaf>& run) {
  std::string text;
  for (const auto& leaf : run) {
    if (leaf.outcome == ktap::Outcome::skip) {
      text += fmt::format("skip {} {}\n", leaf.id, leaf.reason);
    } else if (leaf.outcome == ktap::Outcome::fail) {
      text += fmt::format("# failed: fail {} EVIDENCE (confirm, then write the evidence and uncomment)\n", leaf.id);
    }
  }
  return text;
}

}  // namespace vfiolab::lab
