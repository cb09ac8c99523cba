// KTAP v1: parsing test results (nested subtests, directives, diagnostics)
// and writing them. Format: Documentation/dev-tools/ktap.rst in the kernel.
#pragma once

#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::ktap {

enum class Directive { none, skip, todo, xfail, timeout, error };

std::string_view directive_name(Directive directive);

// How a result counts: XFAIL (failed as expected) passes, TODO (known to
// fail, not yet fixed) is skipped, TIMEOUT and ERROR fail.
enum class Outcome { pass, fail, skip };

struct Result {
  bool ok = false;
  int number = 0;
  std::string name;
  Directive directive = Directive::none;
  std::string reason;  // text after the directive, or after '#' without one
  std::vector<std::string> diagnostics;  // lines that came before the result
  std::vector<Result> subtests;
  std::optional<int> plan;  // the subtests' plan line
  int line = 0;             // where the result line was (1-based)
  // The parser made this result for a block of subtests that never got its
  // own result line (a program that crashed or was cut off).
  bool synthesized = false;
};

Outcome outcome(const Result& result);

struct Problem {
  int line = 0;
  std::string message;
};

struct Document {
  bool has_version = false;
  std::optional<int> plan;
  std::vector<Result> results;
  std::vector<std::string> diagnostics;  // top-level lines after the last result
  std::vector<Problem> problems;         // malformed input, noted and survived
};

// One result line, split into its parts.
struct ResultLine {
  bool ok = false;
  std::optional<int> number;
  std::string name;
  Directive directive = Directive::none;
  std::string reason;
};
std::optional<ResultLine> parse_result_line(std::string_view text);

// Streaming parser: feed lines as they arrive, get each finished result (at
// any depth, 0 for top level) through the callback, and the whole document
// from finish(). Never throws on malformed input; records a Problem instead.
class Parser {
 public:
  using Callback = std::function<void(const Result&, int depth)>;
  explicit Parser(Callback on_result = {});

  void feed_line(std::string_view line);
  void feed(std::string_view text);  // any number of lines
  Document finish();

 private:
  struct Frame {
    std::optional<int> plan;
    int plan_line = 0;
    bool has_version = false;
    int first_line = 0;
    std::vector<Result> results;
    std::vector<std::string> pending;  // diagnostics for the next result
  };

  void open_frames_to(std::size_t depth);
  void fold_frames_to(std::size_t keep);
  void take_subtests(Frame& frame, Result& parent);
  void problem(std::string message);

  Callback on_result_;
  std::vector<Frame> frames_;
  std::vector<Problem> problems_;
  int line_number_ = 0;
  std::string partial_;  // feed() text after the last newline
};

Document parse(std::string_view text);

struct Counts {
  int passed = 0;
  int failed = 0;
  int skipped = 0;
  Counts& operator+=(const Counts& other);
  int total() const { return passed + failed + skipped; }
};

// Counts leaf tests. A result with subtests counts its subtests, plus one
// failure of its own when it failed although none of its subtests did
// (a program that crashed after its last test, say).
Counts count(const Result& result);

// kselftest's exit codes, for every program of the suite.
inline constexpr int kExitPass = 0;
inline constexpr int kExitFail = 1;
inline constexpr int kExitSkip = 4;

// What a program that ran these tests exits with: fail on any failure,
// skip when nothing passed and something was skipped, pass otherwise (no
// test at all passes: a filter that selects nothing is the caller's error).
int exit_code(const Counts& counts);

// Writer for programs that report in KTAP: every program of the suite
// writes its results through one. It counts what it writes at its own
// depth; finish() (or skip_all()) ends the report.
class Writer {
 public:
  explicit Writer(std::FILE* out = stdout, int depth = 0);
  void header();
  void plan(int count);
  void diagnostic(std::string_view text);
  void result(bool ok, std::string_view name, Directive directive = Directive::none,
              std::string_view reason = {});
  void pass(std::string_view name) { result(true, name); }
  void fail(std::string_view name, std::string_view reason = {});
  void skip(std::string_view name, std::string_view reason);
  // A line of a child program's output, as a diagnostic: kept as it is
  // when it is one already ("#..."), else behind "# ".
  void relay(std::string_view text);
  // The whole report of a program with nothing it can run here (no device
  // given), after header(): an empty plan, `reason` as a diagnostic and
  // the totals. Returns kExitSkip.
  int skip_all(std::string_view reason);
  int number() const { return number_; }
  const Counts& counts() const { return counts_; }
  // Writes kselftest's closing line ("# Totals: pass:N fail:N xfail:0
  // xpass:0 skip:N error:0") and returns the exit code for the counts.
  int finish();

 private:
  void line(std::string_view text);
  std::FILE* out_;
  std::string indent_;
  int number_ = 0;
  Counts counts_;
};

}  // namespace vfiolab::ktap
