// The suite's main(): see harness.h for the conventions it adds to
// GoogleTest.
#include "harness.h"
#include "selection.h"

#include "vfiolab/child_process.h"
#include "vfiolab/ktap.h"
#include "vfiolab/sysfs.h"
#include "vfiolab/text.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <span>
#include <string_view>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace vfiolab::harness {
namespace {

using ktap::kExitFail;
using ktap::kExitPass;
using ktap::kExitSkip;
constexpr std::chrono::seconds kDefaultTimeout{60};

std::vector<std::string>& bdfs() {
  static std::vector<std::string> list;
  return list;
}

std::vector<std::pair<std::string, std::chrono::seconds>>& timeout_overrides() {
  static std::vector<std::pair<std::string, std::chrono::seconds>> list;
  return list;
}

std::vector<ProgramOption*>& program_options() {
  static std::vector<ProgramOption*> list;
  return list;
}

bool& no_device_needed() {
  static bool value = false;
  return value;
}

IommuMode& chosen_mode() {
  static IommuMode mode = kDefaultIommuMode;
  return mode;
}

// The run's notes (run_noted, note_for_run): NUL-ended keys one after
// another, ended by an empty one, in memory shared with every test's
// process (made by the first call, which main makes before any fork). The
// tests run one at a time, so one writer at most.
constexpr std::size_t kRunNotesSize = 64 * 1024;
std::span<char> run_notes() {
  static const std::span<char> notes = [] {
    void* memory = ::mmap(nullptr, kRunNotesSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return std::span<char>();
    return std::span<char>(static_cast<char*>(memory), kRunNotesSize);
  }();
  return notes;
}

std::chrono::seconds timeout_for(const std::string& full_name, std::chrono::seconds fallback) {
  std::size_t best = 0;
  std::chrono::seconds timeout = fallback;
  for (const auto& [prefix, seconds] : timeout_overrides()) {
    if (full_name.starts_with(prefix) && prefix.size() >= best) {
      best = prefix.size();
      timeout = seconds;
    }
  }
  return timeout;
}

// In the child: prints failures and skips as KTAP diagnostics and keeps the
// outcome for the exit code.
class DiagnosticListener : public testing::EmptyTestEventListener {
 public:
  void OnTestPartResult(const testing::TestPartResult& part) override {
    if (part.type() == testing::TestPartResult::kSuccess) return;  // SUCCEED(): nothing to say
    std::string where = part.file_name() ? fmt::format("{}:{}: ", part.file_name(), part.line_number()) : "";
    std::string text = part.message();
    std::size_t start = 0;
    bool first = true;
    while (start <= text.size()) {
      auto end = text.find('\n', start);
      std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (!line.empty() || first) {
        fmt::print("# {}{}{}\n", part.skipped() ? "SKIP " : "", first ? where : "  ", line);
      }
      first = false;
      if (end == std::string::npos) break;
      start = end + 1;
    }
    if (part.skipped() && skip_reason.empty()) skip_reason = text;
    std::fflush(stdout);
  }
  std::string skip_reason;
};

struct Outcome {
  ktap::Directive directive = ktap::Directive::none;
  bool ok = false;
  std::string reason;
  std::vector<std::string> output;
};

[[noreturn]] void run_in_child(const std::string& gtest_name) {
  testing::GTEST_FLAG(filter) = gtest_name;
  auto& listeners = testing::UnitTest::GetInstance()->listeners();
  std::unique_ptr<testing::TestEventListener> printer(listeners.Release(listeners.default_result_printer()));
  auto owned = std::make_unique<DiagnosticListener>();
  DiagnosticListener* listener = owned.get();
  listeners.Append(owned.release());  // GoogleTest owns its listeners
  int rc = RUN_ALL_TESTS();
  const testing::TestResult* result = nullptr;
  auto* unit = testing::UnitTest::GetInstance();
  for (int s = 0; s < unit->total_test_suite_count() && !result; ++s) {
    const auto* suite = unit->GetTestSuite(s);
    for (int t = 0; t < suite->total_test_count(); ++t) {
      if (suite->GetTestInfo(t)->should_run()) result = suite->GetTestInfo(t)->result();
    }
  }
  std::fflush(stdout);
  std::fflush(stderr);
  if (result && result->Skipped()) {
    fmt::print("# vfiolab-skip-reason: {}\n", listener->skip_reason);
    std::fflush(stdout);
    _exit(kExitSkip);
  }
  _exit(rc == 0 && result && result->Passed() ? kExitPass : kExitFail);
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

Outcome run_isolated(const std::string& gtest_name, std::chrono::seconds timeout) {
  Outcome outcome;
  // A group of its own, so a timeout kills whatever the test started too.
  auto child = ChildProcess::start({.timeout = timeout}, [&] { run_in_child(gtest_name); });
  if (!child) {
    outcome.reason = fmt::format("{}: {}", child.error().operation, std::strerror(child.error().errnum));
    return outcome;
  }
  std::string buffer;
  child->run_to_end([&](std::string_view chunk) { buffer.append(chunk); });
  const bool timed_out = child->timed_out();
  const int status = child->status();

  std::size_t start = 0;
  while (start < buffer.size()) {
    auto end = buffer.find('\n', start);
    std::string line = buffer.substr(start, end == std::string::npos ? std::string::npos : end - start);
    start = end == std::string::npos ? buffer.size() : end + 1;
    if (line.starts_with("# vfiolab-skip-reason: ")) {
      outcome.reason = line.substr(23);
      continue;
    }
    outcome.output.push_back(line);
  }

  if (timed_out) {
    outcome.directive = ktap::Directive::timeout;
    outcome.reason = fmt::format("no result after {} s; killed", timeout.count());
  } else if (WIFSIGNALED(status)) {
    outcome.reason = fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == kExitSkip) {
    outcome.ok = true;
    outcome.directive = ktap::Directive::skip;
    outcome.reason = first_line(outcome.reason);
    if (outcome.reason.empty()) outcome.reason = "skipped";
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == kExitPass) {
    outcome.ok = true;
  } else if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) != kExitFail) outcome.reason = fmt::format("exit status {}", WEXITSTATUS(status));
  }
  return outcome;
}

void usage(const char* program) {
  fmt::print(stderr,
             "usage: {} [-l] [-f FIXTURE] [-v VARIANT] [-t TEST] [-r FIXTURE.VARIANT.TEST] [-m IOMMU_MODE] "
             "[-T SECONDS] [--gtest_...] [BDF...]\n"
             "  devices: trailing BDFs, or VFIO_SELFTESTS_BDF; the first is the device under test{}\n",
             program, no_device_needed() ? " (this program needs none)" : "");
  // The harness's own options, one a line as a program's own are (and as
  // the vfiolab-harness(7) man page has them: scripts/check-man-pages).
  fmt::print(stderr,
             "  -l: list the selected tests' names (fixture.variant.test) and exit\n"
             "  -f FIXTURE: run the tests of this fixture (repeatable)\n"
             "  -v VARIANT: run the tests of this variant (repeatable)\n"
             "  -t TEST: run the tests of this name (repeatable)\n"
             "  -r FIXTURE.VARIANT.TEST: run this one test (repeatable)\n"
             "  -m IOMMU_MODE: the mode of fixtures without mode variants (default iommufd)\n"
             "  -T SECONDS: each test's timeout (default {}; a test may set its own)\n"
             "  --gtest_...: GoogleTest's own flags (--gtest_filter=PATTERN selects too)\n"
             "  -h, --help: this text\n",
             kDefaultTimeout.count());
  for (const auto* option : program_options()) fmt::print(stderr, "{}\n", option->usage());
}

}  // namespace

namespace {

// Where `key` is among the run's notes, or else where their list ends.
struct NoteSearch {
  bool found;
  std::size_t at;
};
NoteSearch find_note(std::span<const char> notes, std::string_view key) {
  std::size_t at = 0;
  while (at < notes.size() && notes[at] != '\0') {
    const std::string_view noted(notes.data() + at);
    if (noted == key) return {true, at};
    at += noted.size() + 1;
  }
  return {false, at};
}

}  // namespace

bool run_noted(std::string_view key) { return find_note(run_notes(), key).found; }

void note_for_run(std::string_view key) {
  if (key.empty()) return;
  const auto notes = run_notes();
  const auto [found, end] = find_note(notes, key);
  // Room for the key, its NUL and the empty key that ends the list.
  if (found || end + key.size() + 2 > notes.size()) return;
  std::memcpy(notes.data() + end, key.data(), key.size());
  notes[end + key.size()] = '\0';
}

const std::vector<std::string>& device_bdfs() { return bdfs(); }

const std::string& device_bdf() {
  static const std::string none;
  return bdfs().empty() ? none : bdfs().front();
}

IommuMode iommu_mode() { return chosen_mode(); }

ProgramOption::ProgramOption(const char* flag, Kind kind, const char* value_name, const char* help)
    : flag_(flag), kind_(kind), value_name_(value_name ? value_name : ""), help_(help) {
  program_options().push_back(this);
}

unsigned long ProgramOption::number_or(unsigned long fallback) const {
  return given_ ? text::positive_number(flag_, value_).value_or(fallback) : fallback;
}

std::string ProgramOption::usage() const {
  return fmt::format("  {}{}{}: {}", flag_, takes_value() ? " " : "", value_name_, help_);
}

void ProgramOption::set(std::string value) {
  given_ = true;
  value_ = std::move(value);
}

NoDeviceNeeded::NoDeviceNeeded() { no_device_needed() = true; }
bool device_needed() { return !no_device_needed(); }

TimeoutOverride::TimeoutOverride(const char* prefix, std::chrono::seconds timeout) {
  timeout_overrides().emplace_back(prefix, timeout);
}

}  // namespace vfiolab::harness

int main(int argc, char** argv) {
  using namespace vfiolab;
  using namespace vfiolab::harness;
  testing::InitGoogleTest(&argc, argv);  // takes the --gtest_* flags
  (void)run_notes();                     // shared with the tests' processes, so made before they are

  Selection selection;
  bool list = false;
  std::chrono::seconds default_timeout = kDefaultTimeout;
  // A bad argument is a FAIL, with a message naming it.
  auto refuse = [&](const std::string& problem) {
    fmt::print(stderr, "{}: {}\n", argv[0], problem);
    return kExitFail;
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      auto given = text::option_value(argc, argv, i);
      if (!given) {
        refuse(given.error().message());
        usage(argv[0]);
        std::exit(kExitFail);
      }
      return std::string(*given);
    };
    if (arg == "-l") {
      list = true;
    } else if (arg == "-f") {
      selection.fixtures.push_back(value());
    } else if (arg == "-v") {
      selection.variants.push_back(value());
    } else if (arg == "-t") {
      selection.tests.push_back(value());
    } else if (arg == "-r") {
      selection.full.push_back(value());
    } else if (arg == "-m") {
      auto mode = iommu_mode_from_name(value());
      if (!mode) return refuse(mode.error().message());
      chosen_mode() = *mode;
    } else if (arg == "-T") {
      auto seconds = text::positive_number(arg, value(), "seconds");
      if (!seconds) return refuse(seconds.error().message());
      default_timeout = std::chrono::seconds(*seconds);
    } else if (arg == "-h" || arg == "--help") {
      usage(argv[0]);
      return kExitPass;
    } else if (auto own = std::find_if(program_options().begin(), program_options().end(),
                                       [&](const ProgramOption* option) { return option->flag() == arg; });
               own != program_options().end()) {
      ProgramOption& option = **own;
      if (!option.takes_value()) {
        option.set("1");
        continue;
      }
      std::string given = value();
      if (option.kind() == ProgramOption::Kind::number) {
        if (auto number = text::positive_number(arg, given); !number) return refuse(number.error().message());
      }
      option.set(given);
    } else if (arg.starts_with("-")) {
      refuse(fmt::format("unknown option '{}'", arg));
      usage(argv[0]);
      return kExitFail;
    } else {
      auto bdf = parse_bdf(arg);
      if (!bdf) return refuse(bdf.error().message());
      bdfs().push_back(bdf->str());
    }
  }
  // Every test's timeout times this (a slow kernel: the lab's debug lane).
  long timeout_scale = 1;
  if (const char* env = std::getenv("VFIOLAB_TIMEOUT_SCALE"); env && *env) {
    auto scale = text::positive_number("VFIOLAB_TIMEOUT_SCALE", env);
    if (!scale) return refuse(scale.error().message());
    timeout_scale = static_cast<long>(*scale);
  }
  if (bdfs().empty()) {
    if (const char* env = std::getenv("VFIO_SELFTESTS_BDF"); env && *env) {
      auto bdf = parse_bdf(env);
      if (!bdf) return refuse("VFIO_SELFTESTS_BDF: " + bdf.error().message());
      bdfs().push_back(bdf->str());
    }
  }

  struct Selected {
    TestName name;
    std::string gtest_name;
  };
  std::vector<Selected> selected;
  std::vector<TestName> known;
  auto* unit = testing::UnitTest::GetInstance();
  for (int s = 0; s < unit->total_test_suite_count(); ++s) {
    const auto* suite = unit->GetTestSuite(s);
    for (int t = 0; t < suite->total_test_count(); ++t) {
      const auto* info = suite->GetTestInfo(t);
      std::string gtest_name = fmt::format("{}.{}", info->test_suite_name(), info->name());
      if (!gtest_filter_matches(testing::GTEST_FLAG(filter), gtest_name)) continue;
      TestName name = kselftest_name(info->test_suite_name(), info->name());
      known.push_back(name);
      if (selection.selects(name)) selected.push_back({name, gtest_name});
    }
  }
  if (const auto missing = selection.unmatched(known); !missing.empty()) {
    for (const auto& word : missing) fmt::print(stderr, "{}: {} matches no test (list them with -l)\n", argv[0], word);
    return kExitFail;
  }
  if (!selection.empty() && selected.empty()) {
    fmt::print(stderr, "{}: no test has all of the fixture, variant and test asked for (list them with -l)\n", argv[0]);
    return kExitFail;
  }

  if (list) {
    for (const auto& test : selected) fmt::print("{}\n", test.name.full());
    return kExitPass;
  }

  ktap::Writer out;
  out.header();
  if (bdfs().empty() && device_needed()) {
    const int code = out.skip_all("no device: pass a BDF as the last argument or set VFIO_SELFTESTS_BDF");
    usage(argv[0]);
    return code;
  }
  out.plan(static_cast<int>(selected.size()));
  for (const auto& test : selected) {
    Outcome outcome = run_isolated(test.gtest_name, timeout_for(test.name.full(), default_timeout) * timeout_scale);
    for (const auto& line : outcome.output) out.relay(line);
    if (outcome.directive == ktap::Directive::skip) {
      out.skip(test.name.full(), outcome.reason);
    } else if (outcome.ok) {
      out.pass(test.name.full());
    } else {
      if (!outcome.reason.empty()) out.diagnostic(outcome.reason);
      out.result(false, test.name.full(), outcome.directive);
    }
  }
  return out.finish();
}
