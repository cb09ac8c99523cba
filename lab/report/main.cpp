// vfiolab-lab-report: the lab runner's reporting half.
//
//   vfiolab-lab-report follow [--verbose] [--label NAME] [--timing FILE] [--tests FILE]
//       Read the guest's progress lines (see lab/runner/main.cpp) from stdin
//       as they arrive and print each program's results (each line after
//       "NAME: " with --label); at the end write the timing table (boot,
//       programs, slowest tests) and every test's time (tab-separated).
//   vfiolab-lab-report merge --plan FILE --out FILE KTAP...
//       One KTAP document from those of the machines a run was split over
//       (merge.h), in the order of the plan file's entries.
//   vfiolab-lab-report tsc-khz
//       The rate of this host's time stamp counter in kHz, measured against
//       CLOCK_MONOTONIC_RAW over 200 ms. Under TCG a guest's TSC is the
//       host's, and lab/run gives the guest this rate (tsc_early_khz).
//       Exit 2 on a host that is not x86-64.
//   vfiolab-lab-report files STREAM FOLDER
//       Write into FOLDER the files a guest sent back on its files port
//       (files.h), saying each one's path on stderr, or that it arrived
//       damaged or truncated (then its base64 is left as NAME.b64). Exit 0
//       however they arrived: a lost file is named, and the run goes on.
//   vfiolab-lab-report summarize --ktap FILE --kernel-log FILE... [--junit FILE] [--note TEXT]...
//       Parse the finished run: per-program and total counts, kernel
//       reports (WARNING, BUG, Oops, ...) as failures with their log lines,
//       JUnit XML. Exit 0 when nothing failed, 1 otherwise. Several
//       --kernel-log (one per machine) are scanned each on its own, their
//       line numbers counted through as if they were one file after
//       another, as lab/run writes them into console.log.
//   vfiolab-lab-report expect --ktap FILE --kernel-log FILE --expect FILE [--draft FILE] [--part]
//                             [--note TEXT]...
//       Hold the finished run against its lane's expectations (expect.h):
//       every difference, kernel report and note fails it. --draft writes
//       an expectations file for what the run did; --part holds a run of a
//       part of the plan (the fast tier) against what of the file ran.
//       Exit 0 when the run was as expected, 1 otherwise.
#include "expect.h"
#include "files.h"
#include "junit.h"
#include "merge.h"
#include "plan.h"
#include "progress.h"

#include "vfiolab/kernel_log.h"
#include "vfiolab/ktap.h"
#include "vfiolab/text.h"

#include "vfiolab/unique_fd.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace {

using namespace vfiolab;

constexpr std::size_t kDiagnosticLinesShown = 12;

std::string counts_text(const ktap::Counts& counts) {
  return fmt::format("{} passed, {} failed, {} skipped", counts.passed, counts.failed, counts.skipped);
}

int follow(bool verbose, const std::string& label, const std::string& timing_path, const std::string& tests_path) {
  auto start = std::chrono::steady_clock::now();
  const std::string prefix = label.empty() ? "" : label + ": ";
  lab::Progress progress(
      [&prefix](const std::string& line) {
        fmt::print("{}{}\n", prefix, line);
        std::fflush(stdout);
      },
      verbose);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    progress.feed(line, elapsed.count());
  }
  auto write = [](const std::string& path, const std::string& text) {
    if (path.empty()) return;
    std::ofstream out(path);
    out << text;
    if (!out) fmt::print(stderr, "vfiolab-lab-report: cannot write '{}'\n", path);
  };
  write(timing_path, progress.table(15));
  write(tests_path, progress.tests_tsv());
  return 0;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The failing leaves of a result, with the last lines of their output.
void print_failures(const ktap::Result& result, const std::string& path) {
  std::string name = path.empty() ? result.name : path + "/" + result.name;
  bool child_failed = false;
  for (const auto& subtest : result.subtests) {
    if (ktap::count(subtest).failed > 0) {
      child_failed = true;
      print_failures(subtest, name);
    }
  }
  if (child_failed || ktap::outcome(result) != ktap::Outcome::fail) return;
  fmt::print("  FAIL {}{}\n", name, result.reason.empty() ? "" : " (" + result.reason + ")");
  const auto& lines = result.diagnostics;
  std::size_t first = lines.size() > kDiagnosticLinesShown ? lines.size() - kDiagnosticLinesShown : 0;
  for (std::size_t i = first; i < lines.size(); ++i) fmt::print("       {}\n", lines[i]);
}

// What a finished run left: its results, the kernel's reports, and notes on
// what went wrong around the tests (each counts as one failure).
struct Run {
  ktap::Document document;
  std::vector<kernel_log::Finding> findings;
  std::vector<std::string> notes;
  int missing = 0;  // programs the plan promised that never reported

  int extra_failures() const {
    // A note about missing programs stands for those programs; other notes
    // (timeouts, QEMU errors) count once each, as does every kernel report.
    return static_cast<int>(findings.size() + notes.size()) + (missing > 0 ? missing - 1 : 0);
  }
};

std::optional<Run> load_run(const std::string& ktap_path, const std::vector<std::string>& log_paths,
                            std::vector<std::string> notes) {
  auto ktap_text = read_file(ktap_path);
  if (!ktap_text) {
    fmt::print(stderr, "vfiolab-lab-report: cannot read KTAP file '{}'\n", ktap_path);
    return std::nullopt;
  }

  Run run;
  run.document = ktap::parse(*ktap_text);
  // Each machine's log on its own (a program running when one machine's log
  // ends is not running in the next), numbered as one file.
  int lines_before = 0;
  for (const auto& log_path : log_paths) {
    auto log_text = read_file(log_path);
    if (!log_text) {
      notes.push_back(fmt::format("no kernel log at '{}'", log_path));
      continue;
    }
    for (auto finding : kernel_log::scan(*log_text)) {
      finding.line += lines_before;
      run.findings.push_back(std::move(finding));
    }
    lines_before += static_cast<int>(std::count(log_text->begin(), log_text->end(), '\n'));
    if (!log_text->empty() && log_text->back() != '\n') ++lines_before;
  }
  const auto& document = run.document;
  if (!document.plan) {
    notes.push_back("the guest never started its plan (no KTAP plan line on the results port)");
  } else if (static_cast<std::size_t>(*document.plan) > document.results.size()) {
    run.missing = *document.plan - static_cast<int>(document.results.size());
    notes.push_back(
        fmt::format("{} of {} programs never reported (the guest stopped early)", run.missing, *document.plan));
  }
  run.notes = std::move(notes);
  return run;
}

int summarize(const std::string& ktap_path, const std::vector<std::string>& log_paths, const std::string& junit_path,
              std::vector<std::string> notes) {
  auto loaded = load_run(ktap_path, log_paths, std::move(notes));
  if (!loaded) return 2;
  const ktap::Document& document = loaded->document;
  const auto& findings = loaded->findings;

  std::size_t width = 40;
  for (const auto& program : document.results) width = std::max(width, program.name.size() + 1);
  fmt::print("\n{:<{}} {:>7} {:>7} {:>7}\n", "program", width, "passed", "failed", "skipped");
  ktap::Counts total;
  for (const auto& program : document.results) {
    ktap::Counts counts = ktap::count(program);
    fmt::print("{:<{}} {:>7} {:>7} {:>7}{}\n", program.name, width, counts.passed, counts.failed, counts.skipped,
               program.directive == ktap::Directive::timeout ? "  (timed out)" : "");
    total += counts;
  }

  bool any_failed = total.failed > 0;
  if (any_failed) {
    fmt::print("\nfailures:\n");
    for (const auto& program : document.results) print_failures(program, "");
  }
  if (!findings.empty()) {
    fmt::print("\nkernel log: {} report(s), each counted as a failure:\n", findings.size());
    for (const auto& finding : findings) {
      fmt::print("  {} {} (kernel log line {}):\n", kernel_log::kind_name(finding.kind),
                 finding.program.empty() ? "outside any program" : "during " + finding.program, finding.line);
      for (const auto& line : finding.lines) fmt::print("    {}\n", line);
    }
  }
  if (!document.problems.empty()) {
    fmt::print("\nKTAP problems (input kept as far as it parsed):\n");
    for (const auto& problem : document.problems) fmt::print("  line {}: {}\n", problem.line, problem.message);
  }
  for (const auto& note : loaded->notes) fmt::print("\nlab: {}\n", note);
  total.failed += loaded->extra_failures();

  if (!junit_path.empty()) {
    std::ofstream out(junit_path);
    out << lab::junit_xml(document, findings, loaded->notes);
    if (!out) fmt::print(stderr, "vfiolab-lab-report: cannot write '{}'\n", junit_path);
  }

  fmt::print("\n{}\n", counts_text(total));
  return total.failed > 0 ? 1 : 0;
}

// The run held against its lane's expectations (expect.h). Notes are never
// expected, and each fails the lane; so does each kernel report that no
// "report" entry lists.
int expect(const std::string& ktap_path, const std::vector<std::string>& log_paths, const std::string& expect_path,
           const std::string& draft_path, lab::Scope scope, std::vector<std::string> notes) {
  auto loaded = load_run(ktap_path, log_paths, std::move(notes));
  if (!loaded) return 2;
  const auto run = lab::leaves(loaded->document);
  if (!draft_path.empty()) {
    std::ofstream out(draft_path);
    out << lab::draft_expectations(run);
    if (!out) fmt::print(stderr, "vfiolab-lab-report: cannot write '{}'\n", draft_path);
  }
  auto text = read_file(expect_path);
  if (!text) {
    fmt::print(stderr, "vfiolab-lab-report: cannot read expectations '{}'\n", expect_path);
    return 2;
  }
  auto expected = lab::parse_expectations(*text);
  if (!expected) {
    fmt::print(stderr, "vfiolab-lab-report: {}: {}\n", expect_path, expected.error().message());
    return 2;
  }
  const lab::Verdict verdict = lab::check(run, *expected, scope);
  fmt::print("\nexpectations: {}{}\n", expect_path,
             scope == lab::Scope::part ? " (a part of the plan ran: held against the tests that ran)" : "");
  fmt::print("  known failures that failed, as listed: {}\n", verdict.known_failures.size());
  for (const auto& id : verdict.known_failures) fmt::print("    {}\n", id);
  fmt::print("  differences: {}\n", verdict.problems.size());
  for (const auto& problem : verdict.problems) fmt::print("    {}\n", problem);
  // Kernel reports count as failures unless a "report" entry lists them.
  const lab::ReportVerdict reports = lab::check_reports(loaded->findings, *expected, scope);
  fmt::print("  known kernel reports, as listed: {}\n", reports.known.size());
  for (const auto& known : reports.known) fmt::print("    {}\n", known);
  for (const auto& problem : reports.problems) fmt::print("  {}\n", problem);
  for (const auto& note : loaded->notes) fmt::print("  lab: {}\n", note);
  const int failed = static_cast<int>(verdict.problems.size() + reports.problems.size()) +
                     loaded->extra_failures() - static_cast<int>(loaded->findings.size());
  fmt::print("  verdict: {}\n", failed == 0 ? "as expected" : "NOT as expected");
  fmt::print("\n{} passed, {} failed, {} skipped\n", verdict.passed, failed, verdict.skipped);
  return failed == 0 ? 0 : 1;
}

// Asks QEMU's human monitor (a unix socket) each command in turn and prints
// the answers without the monitor's line-editing escapes. For a run that
// timed out: where each vCPU is (registers, HLT, RFLAGS) and its local
// APIC (what is in service, what is pending). Best effort: what cannot be
// asked is said, and the status is 0 unless the socket cannot be reached.
int monitor(const std::string& path, const std::vector<std::string>& commands) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    fmt::print(stderr, "vfiolab-lab-report monitor: socket path {} is {} bytes; a UNIX socket's holds at most {}\n",
               path, path.size(), sizeof(address.sun_path) - 1);
    return 1;
  }
  if (!fd) {
    fmt::print(stderr, "vfiolab-lab-report monitor: socket: {}\n", std::strerror(errno));
    return 1;
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    fmt::print(stderr, "vfiolab-lab-report monitor: connect {}: {}\n", path, std::strerror(errno));
    return 1;
  }
  // Everything the monitor sends until it is quiet for `quiet`.
  auto drain = [&](int quiet_ms) {
    std::string text;
    for (;;) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, quiet_ms) <= 0) break;
      char chunk[65536];
      const ssize_t got = ::read(fd.get(), chunk, sizeof chunk);
      if (got <= 0) break;
      text.append(chunk, static_cast<std::size_t>(got));
    }
    std::string clean;  // without ESC [ ... letter
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '[') {
        i += 2;
        while (i < text.size() && !std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
        continue;
      }
      if (text[i] != '\r') clean += text[i];
    }
    return clean;
  };
  (void)drain(500);  // the banner
  for (const auto& command : commands) {
    const std::string line = command + "\n";
    if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) break;
    std::string answer = drain(1000);
    // The monitor echoes the command as it was typed: drop that line.
    if (const auto newline = answer.find('\n'); newline != std::string::npos) answer.erase(0, newline + 1);
    fmt::print("=== {}\n{}\n", command, answer);
  }
  return 0;
}

// merge --plan FILE --out FILE KTAP...: see merge.h.
int merge(const std::vector<std::string>& args) {
  std::string plan_path, out_path;
  std::vector<std::string> documents;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--plan" || args[i] == "--out") && i + 1 < args.size()) {
      (args[i] == "--plan" ? plan_path : out_path) = args[i + 1];
      ++i;
      continue;
    }
    if (args[i].starts_with("-")) {
      fmt::print(stderr, "vfiolab-lab-report merge: unknown option '{}'\n", args[i]);
      return 2;
    }
    auto text = read_file(args[i]);
    if (!text) {
      fmt::print(stderr, "vfiolab-lab-report merge: cannot read KTAP file '{}'\n", args[i]);
      return 2;
    }
    documents.push_back(std::move(*text));
  }
  auto plan = plan_path.empty() ? std::nullopt : read_file(plan_path);
  if (!plan || out_path.empty()) {
    fmt::print(stderr, "vfiolab-lab-report merge: {}\n",
               plan_path.empty() || out_path.empty() ? "--plan FILE and --out FILE are needed"
                                                     : fmt::format("cannot read plan '{}'", plan_path));
    return 2;
  }
  auto entries = lab::parse_plan(*plan);
  if (!entries) {
    fmt::print(stderr, "vfiolab-lab-report merge: plan '{}': {}\n", plan_path, entries.error().message());
    return 2;
  }
  std::vector<std::string> names;
  for (const auto& entry : *entries) names.push_back(entry.name);
  std::ofstream out(out_path);
  out << lab::merge_ktap(names, documents);
  if (!out) {
    fmt::print(stderr, "vfiolab-lab-report merge: cannot write '{}'\n", out_path);
    return 2;
  }
  return 0;
}

int tsc_khz() {
#if defined(__x86_64__)
  // Both ends are read back to back, so a preemption between them shifts
  // both clocks alike; 200 ms puts the error of one read well under 1 ppm.
  auto now = [] {
    timespec at{};
    ::clock_gettime(CLOCK_MONOTONIC_RAW, &at);
    return std::pair{__rdtsc(), static_cast<double>(at.tv_sec) * 1e9 + static_cast<double>(at.tv_nsec)};
  };
  const auto [tsc_start, ns_start] = now();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto [tsc_stop, ns_stop] = now();
  if (ns_stop <= ns_start || tsc_stop <= tsc_start) {
    fmt::print(stderr, "vfiolab-lab-report tsc-khz: the clocks did not advance\n");
    return 2;
  }
  fmt::print("{:.0f}\n", static_cast<double>(tsc_stop - tsc_start) / (ns_stop - ns_start) * 1e6);
  return 0;
#else
  fmt::print(stderr, "vfiolab-lab-report tsc-khz: this host has no x86 time stamp counter\n");
  return 2;
#endif
}

int files(const std::string& stream_path, const std::string& folder) {
  auto stream = text::read_file(stream_path);
  if (!stream) {
    // No stream: the guest sent nothing (a machine that never booted).
    if (stream.error().errnum == ENOENT) return 0;
    fmt::print(stderr, "vfiolab-lab-report files: {}\n", stream.error().message());
    return 2;
  }
  const auto sent = lab::parse_sent_files(*stream);
  if (sent.empty()) return 0;
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) {
    fmt::print(stderr, "vfiolab-lab-report files: cannot make '{}': {}\n", folder, error.message());
    return 2;
  }
  for (const auto& file : sent) {
    const auto path = std::filesystem::path(folder) / file.name;
    const auto written = file.bytes ? path : std::filesystem::path(path.string() + ".b64");
    std::ofstream out(written, std::ios::binary);
    if (file.bytes) {
      out << *file.bytes;
    } else {
      out << file.base64 << '\n';
    }
    if (!out.flush()) {
      fmt::print(stderr, "vfiolab-lab-report files: cannot write '{}'\n", written.string());
      return 2;
    }
    if (file.bytes) {
      fmt::print(stderr, "lab: file from the guest: {}\n", path.string());
      continue;
    }
    if (file.truncated) {
      fmt::print(stderr, "lab: file from the guest: {} arrived truncated (left as {}.b64)\n", file.name,
                 path.string());
    } else {
      fmt::print(stderr, "lab: file from the guest: {} arrived damaged (left as {}.b64)\n", file.name,
                 path.string());
    }
  }
  return 0;
}

int usage() {
  fmt::print(stderr,
             "usage: vfiolab-lab-report follow [--verbose] [--label NAME] [--timing FILE] [--tests FILE]\n"
             "       vfiolab-lab-report merge --plan FILE --out FILE KTAP...\n"
             "       vfiolab-lab-report files STREAM FOLDER\n"
             "       vfiolab-lab-report tsc-khz\n"
             "       vfiolab-lab-report summarize --ktap FILE --kernel-log FILE... [--junit FILE] [--note TEXT]...\n"
             "       vfiolab-lab-report expect --ktap FILE --kernel-log FILE... --expect FILE [--draft FILE] [--part] "
             "[--note TEXT]...\n"
             "       vfiolab-lab-report monitor SOCKET COMMAND...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage();
  if (args[0] == "follow") {
    bool verbose = false;
    std::string label, timing, tests;
    for (std::size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--verbose" || args[i] == "-v") {
        verbose = true;
      } else if ((args[i] == "--timing" || args[i] == "--tests" || args[i] == "--label") && i + 1 < args.size()) {
        (args[i] == "--timing" ? timing : args[i] == "--tests" ? tests : label) = args[i + 1];
        ++i;
      } else {
        return usage();
      }
    }
    return follow(verbose, label, timing, tests);
  }
  if (args[0] == "merge") return merge(std::vector<std::string>(args.begin() + 1, args.end()));
  if (args[0] == "tsc-khz") {
    if (args.size() != 1) return usage();
    return tsc_khz();
  }
  if (args[0] == "files") {
    if (args.size() != 3) return usage();
    return files(args[1], args[2]);
  }
  if (args[0] == "monitor") {
    if (args.size() < 3) return usage();
    return monitor(args[1], std::vector<std::string>(args.begin() + 2, args.end()));
  }
  if (args[0] != "summarize" && args[0] != "expect") return usage();
  std::string ktap_path, junit_path, expect_path, draft_path;
  std::vector<std::string> log_paths;
  std::vector<std::string> notes;
  lab::Scope scope = lab::Scope::whole_plan;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--part" && args[0] == "expect") {
      scope = lab::Scope::part;
      continue;
    }
    if (i + 1 >= args.size()) return usage();
    const std::string& value = args[i + 1];
    if (args[i] == "--ktap") {
      ktap_path = value;
    } else if (args[i] == "--kernel-log") {
      log_paths.push_back(value);
    } else if (args[i] == "--junit" && args[0] == "summarize") {
      junit_path = value;
    } else if (args[i] == "--expect" && args[0] == "expect") {
      expect_path = value;
    } else if (args[i] == "--draft" && args[0] == "expect") {
      draft_path = value;
    } else if (args[i] == "--note") {
      notes.push_back(value);
    } else {
      return usage();
    }
    ++i;
  }
  if (ktap_path.empty() || log_paths.empty()) return usage();
  if (args[0] == "expect") {
    if (expect_path.empty()) return usage();
    return expect(ktap_path, log_paths, expect_path, draft_path, scope, std::move(notes));
  }
  return summarize(ktap_path, log_paths, junit_path, std::move(notes));
}
