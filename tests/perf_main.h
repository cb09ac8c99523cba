// What the performance programs share: their few options, KTAP framing, and
// the report printed as a table and written as JSON.
#pragma once

#include "vfiolab/iommu.h"
#include "vfiolab/ktap.h"
#include "vfiolab/perf.h"
#include "vfiolab/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::perf_main {

using ktap::kExitFail;
using ktap::kExitPass;
using ktap::kExitSkip;

struct CommonOptions {
  std::vector<IommuMode> modes;  // all five when none given
  std::vector<std::string> bdfs;  // or $VFIO_SELFTESTS_BDF
  std::string json;
  int iterations = 0;  // 0: the program's default
  bool help = false;   // -h: the program shows its usage and stops
};

// A program's own option `arg`: true when taken (its value read through
// `value`), false when `arg` is none of its options, else what is wrong
// with it (the message names the option).
using OptionValue = std::function<Result<std::string_view>()>;
using ExtraOption = std::function<Result<bool>(std::string_view arg, const OptionValue& value)>;

// Parses -m MODE, -n ITERATIONS, --json FILE and BDFs, and the program's own
// options through `extra`. The error is the first bad argument's. What to
// do without a device (no BDFs) or with `help` is the caller's to decide.
inline Result<CommonOptions> parse(int argc, char** argv, const ExtraOption& extra = {}) {
  CommonOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    const OptionValue value = [&] { return text::option_value(argc, argv, i); };
    if (arg == "-m") {
      VFIOLAB_ASSIGN_OR_RETURN(const std::string_view name, value());
      VFIOLAB_ASSIGN_OR_RETURN(const IommuMode mode, iommu_mode_from_name(name));
      o.modes.push_back(mode);
    } else if (arg == "-n") {
      VFIOLAB_ASSIGN_OR_RETURN(const std::string_view count, value());
      VFIOLAB_ASSIGN_OR_RETURN(const unsigned long iterations, text::positive_number(arg, count));
      o.iterations = static_cast<int>(std::min<unsigned long>(iterations, INT_MAX));
    } else if (arg == "--json") {
      VFIOLAB_ASSIGN_OR_RETURN(o.json, value());
    } else if (arg == "-h" || arg == "--help") {
      o.help = true;  // the rest goes unread
      return o;
    } else if (!arg.starts_with("-")) {
      o.bdfs.emplace_back(arg);
    } else {
      bool taken = false;
      if (extra) {
        VFIOLAB_ASSIGN_OR_RETURN(taken, extra(arg, value));
      }
      if (!taken) return std::unexpected(make_error(0, fmt::format("unknown argument '{}'", arg)));
    }
  }
  if (o.bdfs.empty() && std::getenv("VFIO_SELFTESTS_BDF")) o.bdfs.emplace_back(std::getenv("VFIO_SELFTESTS_BDF"));
  if (o.modes.empty()) {
    for (const auto& info : all_iommu_modes()) o.modes.push_back(info.mode);
  }
  return o;
}

// The usage (`usage_tail`: the program's own options), after `problem`
// when there is one.
inline void usage(const char* program, std::string_view usage_tail, std::string_view problem = {}) {
  if (!problem.empty()) fmt::print(stderr, "{}: {}\n", program, problem);
  fmt::print(stderr, "usage: {} [-m MODE]... [-n ITERATIONS] [--json FILE] {}BDF...\n"
                     "  BDFs default to $VFIO_SELFTESTS_BDF; the JSON goes to $VFIOLAB_OUT_DIR or .\n",
             program, usage_tail);
}

// What main() returns when it does not run: a bad argument FAILs naming
// it; help shows the usage; no device to run on shows it too, and SKIPs
// the whole program in KTAP, as every program of the suite does. nullopt:
// run.
inline std::optional<int> exit_before_running(const Result<CommonOptions>& parsed, const char* program,
                                              std::string_view usage_tail) {
  if (!parsed) {
    usage(program, usage_tail, parsed.error().message());
    return kExitFail;
  }
  if (parsed->help) {
    usage(program, usage_tail);
    return kExitSkip;
  }
  if (parsed->bdfs.empty()) {
    ktap::Writer out;
    out.header();
    const int code = out.skip_all("no device: pass BDFs as the last arguments or set VFIO_SELFTESTS_BDF");
    usage(program, usage_tail);
    return code;
  }
  return std::nullopt;
}

// The table as KTAP diagnostics, and the JSON file. False when the JSON
// could not be written.
inline bool finish(const perf::Report& report, const std::string& json, ktap::Writer& out) {
  std::istringstream table(perf::format_table(report.records));
  for (std::string line; std::getline(table, line);) out.diagnostic(line);
  const auto written = perf::write_report(report, json);
  out.diagnostic(written ? "JSON: " + *written : written.error().message());
  return written.has_value();
}

// The totals line and the exit code: kselftest's for the results written,
// fail when something else went wrong (`ok` false: the JSON, a setup step).
inline int end(bool ok, ktap::Writer& out) {
  const int code = out.finish();
  return ok ? code : kExitFail;
}

inline std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : ",") + item;
  return text;
}

}  // namespace vfiolab::perf_main
