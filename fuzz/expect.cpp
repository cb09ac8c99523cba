// A lane's expectations (lab::parse_expectations) and a run's KTAP held
// against them. The input is the expectations, then a byte 0, then the KTAP.
#include "expect.h"
#include "fuzz.h"

#include <algorithm>
#include <set>

namespace {

using namespace vfiolab;
using fuzz::require;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [expectations, ktap_text] = fuzz::split_at_nul(fuzz::as_text(data, size));
  const int lines = static_cast<int>(std::count(expectations.begin(), expectations.end(), '\n')) + 1;

  const auto run = lab::leaves(ktap::parse(ktap_text));
  const auto expected = lab::parse_expectations(expectations);
  if (expected) {
    int last_line = 0;
    std::set<std::string> ids;
    for (const auto& entry : *expected) {
      require(entry.line > last_line && entry.line <= lines, "entries keep the file's order of lines");
      last_line = entry.line;
      require(!entry.id.empty() && !entry.text.empty(), "an entry has an ID and a text");
      require(ids.insert(entry.id).second, "an ID is listed once");
    }
    // Every test of the run is accounted for once: passed, skipped as
    // expected, a known failure or a problem; held against the part that
    // ran, nothing can be stale for not running.
    for (const auto scope : {lab::Scope::whole_plan, lab::Scope::part}) {
      const lab::Verdict verdict = lab::check(run, *expected, scope);
      const std::size_t accounted = static_cast<std::size_t>(verdict.passed) +
                                    static_cast<std::size_t>(verdict.skipped) + verdict.known_failures.size();
      require(verdict.passed >= 0 && verdict.skipped >= 0, "counts are non-negative");
      require(accounted <= run.size(), "no test is counted twice");
      require(accounted + verdict.problems.size() >= run.size(), "every test is accounted for");
      if (scope == lab::Scope::part) {
        require(accounted + verdict.problems.size() == run.size(), "a part is held only on what ran");
      }
    }
  }

  // A draft for the run parses, and the run held against it differs only
  // in its failures, which the draft leaves to a person.
  const auto draft = lab::parse_expectations(lab::draft_expectations(run));
  require(draft.has_value(), "a draft of a run's expectations parses");
  const lab::Verdict verdict = lab::check(run, *draft);
  const auto of = [&](ktap::Outcome outcome) {
    return static_cast<std::size_t>(
        std::count_if(run.begin(), run.end(), [&](const lab::Leaf& leaf) { return leaf.outcome == outcome; }));
  };
  require(verdict.problems.size() == of(ktap::Outcome::fail), "a run differs from its draft only in failures");
  require(static_cast<std::size_t>(verdict.skipped) == of(ktap::Outcome::skip), "every SKIP holds against its draft");
  return 0;
}
