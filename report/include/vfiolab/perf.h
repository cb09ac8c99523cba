// Measurements for the performance programs: samples summarised as median
// and 10th/90th percentiles, one record per measurement, printed as a table
// and written as JSON with a stable schema (README, "Performance").
#pragma once

#include "vfiolab/error.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::perf {

inline constexpr std::string_view kSchema = "vfiolab-perf/1";

struct Summary {
  std::size_t iterations = 0;
  double median = 0;
  double p10 = 0;
  double p90 = 0;
  double min = 0;
  double max = 0;
};
// Percentiles by linear interpolation between the closest ranks; all zero
// for no samples.
Summary summarize(std::vector<double> samples);

struct Record {
  std::string test;     // "map", "unmap", "init", "memcpy", "msi_round_trip", ...
  std::string mode;     // IOMMU mode name, or "" where it does not apply
  std::string backing;  // memory backing name, or ""
  std::uint64_t size = 0;  // bytes per operation, 0 where it does not apply
  Summary stats;
  std::string unit;     // "us", "MiB/s", ...
  // Further dimensions, e.g. {"api", "raw"}, {"prefault", "yes"}, {"driver", "nvme"}.
  std::map<std::string, std::string> labels;
};

struct Report {
  std::string program;
  std::string device;   // BDFs, comma separated
  std::string kernel;   // uname -r
  std::vector<Record> records;
};

std::string json_escape(std::string_view text);
std::string to_json(const Report& report);
// One row per record, columns aligned: test, labels, mode, backing, size,
// iterations, median, p10, p90, unit.
std::string format_table(const std::vector<Record>& records);
// "4K", "2M", "1G", or the byte count when not a whole unit.
std::string size_name(std::uint64_t bytes);
// Accepts "4096", "4K", "64k", "2M", "1G"; zero, other suffixes and sizes
// past 64 bits are an error (EINVAL) quoting the text.
Result<std::uint64_t> parse_size(std::string_view text);

// Microseconds between two points.
inline double micros(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// The running kernel's release (uname -r).
std::string kernel_release();
// Writes the report where $VFIOLAB_OUT_DIR says (the lab brings that
// directory back to the host), or to `path` when given; returns the path
// written, or an error text.
Result<std::string> write_report(const Report& report, const std::string& path);

}  // namespace vfiolab::perf
