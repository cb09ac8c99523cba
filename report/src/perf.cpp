#include "vfiolab/perf.h"

#include <fmt/format.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cerrno>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>

namespace vfiolab::perf {
namespace {

double percentile(const std::vector<double>& sorted, double fraction) {
  const double rank = fraction * static_cast<double>(sorted.size() - 1);
  const auto low = static_cast<std::size_t>(std::floor(rank));
  const auto high = std::min(low + 1, sorted.size() - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (rank - static_cast<double>(low));
}

std::string number(double value) {
  if (!std::isfinite(value)) return "null";
  return fmt::format("{:.6g}", value);
}

std::string labels_text(const Record& r) {
  std::string text;
  for (const auto& [key, value] : r.labels) text += fmt::format("{}{}={}", text.empty() ? "" : ",", key, value);
  return text;
}

}  // namespace

Summary summarize(std::vector<double> samples) {
  Summary s;
  s.iterations = samples.size();
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.median = percentile(samples, 0.5);
  s.p10 = percentile(samples, 0.1);
  s.p90 = percentile(samples, 0.9);
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

std::string json_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string to_json(const Report& report) {
  std::string out = fmt::format("{{\n  \"schema\": \"{}\",\n  \"program\": \"{}\",\n  \"device\": \"{}\",\n  \"kernel\": \"{}\",\n  \"records\": [",
                                kSchema, json_escape(report.program), json_escape(report.device),
                                json_escape(report.kernel));
  for (std::size_t i = 0; i < report.records.size(); ++i) {
    const Record& r = report.records[i];
    std::string labels;
    for (const auto& [key, value] : r.labels) {
      labels += fmt::format("{}\"{}\": \"{}\"", labels.empty() ? "" : ", ", json_escape(key), json_escape(value));
    }
    out += fmt::format(
        "{}\n    {{\"test\": \"{}\", \"mode\": \"{}\", \"backing\": \"{}\", \"size\": {}, \"iterations\": {}, "
        "\"median\": {}, \"p10\": {}, \"p90\": {}, \"min\": {}, \"max\": {}, \"unit\": \"{}\", \"labels\": {{{}}}}}",
        i ? "," : "", json_escape(r.test), json_escape(r.mode), json_escape(r.backing), r.size, r.stats.iterations,
        number(r.stats.median), number(r.stats.p10), number(r.stats.p90), number(r.stats.min), number(r.stats.max),
        json_escape(r.unit), labels);
  }
  out += report.records.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return out;
}

std::string size_name(std::uint64_t bytes) {
  if (bytes == 0) return "-";
  for (auto [shift, suffix] : {std::pair{30, "G"}, {20, "M"}, {10, "K"}}) {
    if (bytes % (1ull << shift) == 0) return fmt::format("{}{}", bytes >> shift, suffix);
  }
  return std::to_string(bytes);
}

Result<std::uint64_t> parse_size(std::string_view text) {
  const auto bad = [&] {
    return std::unexpected(make_error(EINVAL, "parse_size", fmt::format("'{}' is no size (4096, 4K, 2M, 1G)", text)));
  };
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return bad();
  std::string_view suffix(end, static_cast<std::size_t>(text.data() + text.size() - end));
  int shift = 0;
  if (suffix == "K" || suffix == "k") shift = 10;
  else if (suffix == "M" || suffix == "m") shift = 20;
  else if (suffix == "G" || suffix == "g") shift = 30;
  else if (!suffix.empty()) return bad();
  if (value == 0 || value > (UINT64_MAX >> shift)) return bad();
  return value << shift;
}

std::string format_table(const std::vector<Record>& records) {
  using Row = std::array<std::string, 10>;
  std::vector<Row> rows;
  rows.push_back(Row{"test", "labels", "mode", "backing", "size", "iter", "median", "p10", "p90", "unit"});
  for (const Record& r : records) {
    rows.push_back(Row{r.test, labels_text(r), r.mode, r.backing, size_name(r.size), std::to_string(r.stats.iterations),
                    fmt::format("{:.2f}", r.stats.median), fmt::format("{:.2f}", r.stats.p10),
                    fmt::format("{:.2f}", r.stats.p90), r.unit});
  }
  std::array<std::size_t, 10> width{};
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      const bool numeric = c >= 4 && c <= 8;
      line += numeric ? fmt::format("{:>{}}", row[c], width[c]) : fmt::format("{:<{}}", row[c], width[c]);
      if (c + 1 < row.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string kernel_release() {
  utsname name{};
  if (::uname(&name) != 0) return "unknown";
  return name.release;
}

Result<std::string> write_report(const Report& report, const std::string& path) {
  std::string target = path;
  if (target.empty()) {
    const char* dir = std::getenv("VFIOLAB_OUT_DIR");
    target = fmt::format("{}/{}.json", dir && *dir ? dir : ".", report.program);
  }
  std::ofstream out(target);
  out << to_json(report);
  out.close();
  if (!out) {
    const int err = errno;
    return std::unexpected(make_error(err, "cannot write " + target));
  }
  return target;
}

}  // namespace vfiolab::perf
