// What the performance programs share: their few options, KTAP framing, and
// the report printed as a table and written as JSON.
#pragma once

#include "vfiolab/iommu.h"
#include "vfiolab/ktap.h"
#include "vfiolab/perf.h"

#include <fmt/format.h>

#include <cstdlib>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
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
};

// A program's own argument: nullopt when `arg` is not one of its options,
// "" when taken (its value read through `next`), else what is wrong with it.
using ExtraOption = std::function<std::optional<std::string>(std::string_view arg, const std::function<const char*()>& next)>;

// Parses -m MODE, -n ITERATIONS, --json FILE and BDFs, and the program's own
// options through `extra`. Returns an exit code when the program should stop
// (usage, bad arguments), or -1 to go on.
inline int parse(int argc, char** argv, CommonOptions& o, const std::string& usage_tail,
                 const ExtraOption& extra = {}) {
  auto usage = [&](const std::string& problem) {
    if (!problem.empty()) fmt::print(stderr, "{}: {}\n", argv[0], problem);
    fmt::print(stderr, "usage: {} [-m MODE]... [-n ITERATIONS] [--json FILE] {}BDF...\n"
                       "  BDFs default to $VFIO_SELFTESTS_BDF; the JSON goes to $VFIOLAB_OUT_DIR or .\n",
               argv[0], usage_tail);
    return problem.empty() ? kExitSkip : kExitFail;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "-m") {
      const char* v = next();
      auto mode = iommu_mode_from_name(v ? v : "");
      if (!mode) return usage(mode.error().message());
      o.modes.push_back(*mode);
    } else if (arg == "-n") {
      const char* v = next();
      o.iterations = v ? std::atoi(v) : 0;
      if (o.iterations <= 0) return usage("-n needs a positive count");
    } else if (arg == "--json") {
      const char* v = next();
      if (!v) return usage("--json needs a file");
      o.json = v;
    } else if (arg == "-h" || arg == "--help") {
      return usage("");
    } else if (!arg.starts_with("-")) {
      o.bdfs.emplace_back(arg);
    } else {
      const auto problem = extra ? extra(arg, next) : std::nullopt;
      if (!problem) return usage(fmt::format("unknown argument '{}'", arg));
      if (!problem->empty()) return usage(*problem);
    }
  }
  if (o.bdfs.empty() && std::getenv("VFIO_SELFTESTS_BDF")) o.bdfs.emplace_back(std::getenv("VFIO_SELFTESTS_BDF"));
  if (o.bdfs.empty()) return usage("");
  if (o.modes.empty()) {
    for (const auto& info : all_iommu_modes()) o.modes.push_back(info.mode);
  }
  return -1;
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
