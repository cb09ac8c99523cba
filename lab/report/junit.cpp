#include "junit.h"

#include <fmt/format.h>

namespace vfiolab::lab {
namespace {

struct Case {
  std::string name;
  ktap::Outcome outcome;
  std::string message;
  std::string details;
};

std::string join_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

Case leaf_case(const std::string& name, const ktap::Result& result) {
  return {name, ktap::outcome(result), result.reason, join_lines(result.diagnostics)};
}

// Leaf tests of `result`'s subtests, named by their path below it; plus a
// case named `own_name` when `result` failed although none of them did, so
// that failure is not lost.
void collect_subtests(const ktap::Result& result, const std::string& path, const std::string& own_name,
                      std::vector<Case>& cases) {
  std::size_t first = cases.size();
  for (const auto& subtest : result.subtests) {
    std::string name = path.empty() ? subtest.name : path + "/" + subtest.name;
    if (subtest.subtests.empty()) {
      cases.push_back(leaf_case(name, subtest));
    } else {
      collect_subtests(subtest, name, name, cases);
    }
  }
  bool child_failed = false;
  for (std::size_t i = first; i < cases.size(); ++i) child_failed |= cases[i].outcome == ktap::Outcome::fail;
  if (ktap::outcome(result) == ktap::Outcome::fail && !child_failed) cases.push_back(leaf_case(own_name, result));
}

void write_case(std::string& xml, std::string_view suite, const Case& c) {
  xml += fmt::format("    <testcase classname=\"{}\" name=\"{}\">", xml_escape(suite), xml_escape(c.name));
  switch (c.outcome) {
    case ktap::Outcome::pass: break;
    case ktap::Outcome::skip: xml += fmt::format("<skipped message=\"{}\"/>", xml_escape(c.message)); break;
    case ktap::Outcome::fail:
      xml += fmt::format("<failure message=\"{}\">{}</failure>", xml_escape(c.message), xml_escape(c.details));
      break;
  }
  xml += "</testcase>\n";
}

void write_suite(std::string& xml, std::string_view name, const std::vector<Case>& cases) {
  int failures = 0, skipped = 0;
  for (const auto& c : cases) {
    failures += c.outcome == ktap::Outcome::fail;
    skipped += c.outcome == ktap::Outcome::skip;
  }
  xml += fmt::format("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n", xml_escape(name),
                     cases.size(), failures, skipped);
  for (const auto& c : cases) write_case(xml, name, c);
  xml += "  </testsuite>\n";
}

}  // namespace

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters; keep tab and newline.
        if (c < 0x20 && ch != '\t' && ch != '\n') {
          out += '?';
        } else {
          out += ch;
        }
    }
  }
  return out;
}

std::string junit_xml(const ktap::Document& document, const std::vector<kernel_log::Finding>& findings,
                      const std::vector<std::string>& notes) {
  std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"vfiolab-lab\">\n";
  for (const auto& program : document.results) {
    std::vector<Case> cases;
    if (program.subtests.empty()) {
      cases.push_back(leaf_case(program.name, program));
    } else {
      collect_subtests(program, "", "(program)", cases);
    }
    write_suite(xml, program.name, cases);
  }
  std::vector<Case> lab_cases;
  for (const auto& finding : findings) {
    std::string where = finding.program.empty() ? "outside any program" : "during " + finding.program;
    lab_cases.push_back({fmt::format("{} {} (log line {})", kernel_log::kind_name(finding.kind), where, finding.line),
                         ktap::Outcome::fail, finding.lines.empty() ? std::string() : finding.lines.front(),
                         join_lines(finding.lines)});
  }
  for (const auto& note : notes) lab_cases.push_back({"run", ktap::Outcome::fail, note, note});
  if (!lab_cases.empty()) write_suite(xml, "lab", lab_cases);
  xml += "</testsuites>\n";
  return xml;
}

}  // namespace vfiolab::lab
