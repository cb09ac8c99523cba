// KTAP from a program's output: ktap::parse, Parser::feed, parse_result_line.
#include "fuzz.h"
#include "vfiolab/ktap.h"

#include <fmt/format.h>

#include <algorithm>

namespace {

using namespace vfiolab;
using fuzz::require;

bool same(const ktap::Result& a, const ktap::Result& b) {
  return a.ok == b.ok && a.number == b.number && a.name == b.name && a.directive == b.directive &&
         a.reason == b.reason && a.diagnostics == b.diagnostics && a.plan == b.plan && a.line == b.line &&
         a.synthesized == b.synthesized &&
         std::equal(a.subtests.begin(), a.subtests.end(), b.subtests.begin(), b.subtests.end(), same);
}

bool same(const ktap::Document& a, const ktap::Document& b) {
  return a.has_version == b.has_version && a.plan == b.plan && a.diagnostics == b.diagnostics &&
         a.problems.size() == b.problems.size() &&
         std::equal(a.results.begin(), a.results.end(), b.results.begin(), b.results.end(),
                    [](const auto& x, const auto& y) { return same(x, y); });
}

// Walks the tree: every count is non-negative and adds up, a leaf counts as
// exactly one test, a result with subtests as at least the sum of theirs,
// and every line number lies inside the input. Returns the results seen.
int walk(const ktap::Result& result, int lines, int depth) {
  require(depth <= 66, "nesting is bounded");
  require(result.line >= 1 && result.line <= lines, "a result's line is in the input");
  const ktap::Counts counts = ktap::count(result);
  require(counts.passed >= 0 && counts.failed >= 0 && counts.skipped >= 0, "counts are non-negative");
  require(counts.total() == counts.passed + counts.failed + counts.skipped, "total is the sum");
  int seen = 1;
  if (result.subtests.empty()) {
    require(counts.total() == 1, "a leaf counts as one test");
    return seen;
  }
  ktap::Counts below;
  for (const auto& subtest : result.subtests) {
    below += ktap::count(subtest);
    seen += walk(subtest, lines, depth + 1);
  }
  require(counts.passed == below.passed && counts.skipped == below.skipped, "a parent counts its subtests");
  require(counts.failed == below.failed || (below.failed == 0 && counts.failed == 1),
          "a parent adds at most its own failure");
  return seen;
}

// A result line as a writer puts it, from its parts.
std::string canonical(const ktap::ResultLine& line) {
  std::string text = line.ok ? "ok" : "not ok";
  if (line.number) text += fmt::format(" {}", *line.number);
  if (!line.name.empty()) text += fmt::format(" - {}", line.name);
  const std::string_view directive = ktap::directive_name(line.directive);
  if (!directive.empty() || !line.reason.empty()) {
    text += " #";
    if (!directive.empty()) text += fmt::format(" {}", directive);
    if (!line.reason.empty()) text += fmt::format(" {}", line.reason);
  }
  return text;
}

bool same(const ktap::ResultLine& a, const ktap::ResultLine& b) {
  return a.ok == b.ok && a.number == b.number && a.name == b.name && a.directive == b.directive &&
         a.reason == b.reason;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;

  const ktap::Document whole = ktap::parse(text);

  // The same text fed in pieces (as it arrives from a pipe) parses the same,
  // and the callback hears of every result once.
  int heard = 0;
  ktap::Parser parser([&](const ktap::Result&, int depth) {
    require(depth >= 0, "callback depth is non-negative");
    ++heard;
  });
  const std::size_t piece = 1 + size % 13;
  for (std::size_t at = 0; at < size; at += piece) parser.feed(text.substr(at, piece));
  const ktap::Document pieces = parser.finish();
  require(same(whole, pieces), "fed in pieces, the text parses as it does whole");

  int results = 0;
  for (const auto& result : whole.results) results += walk(result, lines, 0);
  require(heard == results, "the callback hears of each result once");
  for (const auto& problem : whole.problems) {
    require(problem.line >= 0 && problem.line <= lines, "a problem's line is in the input");
  }

  // Each line that is a result reads the same once written out again.
  for (std::string_view rest = text; !rest.empty();) {
    const auto newline = rest.find('\n');
    const std::string_view line = rest.substr(0, newline);
    rest.remove_prefix(newline == std::string_view::npos ? rest.size() : newline + 1);
    const auto parsed = ktap::parse_result_line(line);
    if (!parsed) continue;
    require(!parsed->number || *parsed->number >= 0, "a test number is non-negative");
    const auto again = ktap::parse_result_line(canonical(*parsed));
    require(again && same(*parsed, *again), "a result line written out again reads the same");
  }
  return 0;
}
