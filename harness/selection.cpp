#include "selection.h"

#include <algorithm>

namespace vfiolab::harness {
namespace {

bool listed_or_any(const std::vector<std::string>& list, const std::string& value) {
  return list.empty() || std::find(list.begin(), list.end(), value) != list.end();
}

bool glob_matches(std::string_view pattern, std::string_view text) {
  // Iterative glob with backtracking to the last '*'.
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool any_pattern_matches(std::string_view patterns, std::string_view name) {
  std::size_t start = 0;
  while (start <= patterns.size()) {
    auto end = patterns.find(':', start);
    std::string_view pattern = patterns.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (!pattern.empty() && glob_matches(pattern, name)) return true;
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return false;
}

}  // namespace

bool gtest_filter_matches(std::string_view filter, std::string_view name) {
  auto dash = filter.find('-');
  std::string_view positive = filter.substr(0, dash);
  std::string_view negative = dash == std::string_view::npos ? std::string_view() : filter.substr(dash + 1);
  bool included = positive.empty() ? true : any_pattern_matches(positive, name);
  return included && !any_pattern_matches(negative, name);
}

std::string TestName::full() const {
  return variant.empty() ? fixture + "." + test : fixture + "." + variant + "." + test;
}

TestName kselftest_name(std::string_view suite, std::string_view name) {
  TestName out;
  auto slash = suite.find('/');
  if (slash == std::string_view::npos) {
    out.fixture = std::string(suite);
    out.test = std::string(name);
    return out;
  }
  out.fixture = std::string(suite.substr(0, slash));
  auto name_slash = name.find('/');
  out.test = std::string(name.substr(0, name_slash));
  if (name_slash != std::string_view::npos) out.variant = std::string(name.substr(name_slash + 1));
  return out;
}

bool Selection::selects(const TestName& name) const {
  if (empty()) return true;
  if (std::find(full.begin(), full.end(), name.full()) != full.end()) return true;
  if (fixtures.empty() && variants.empty() && tests.empty()) return false;  // only -r was given
  return listed_or_any(fixtures, name.fixture) && listed_or_any(variants, name.variant) &&
         listed_or_any(tests, name.test);
}

std::vector<std::string> Selection::unmatched(const std::vector<TestName>& known) const {
  std::vector<std::string> missing;
  auto check_words = [&](const std::vector<std::string>& words, const char* option, auto part) {
    for (const auto& word : words) {
      const bool found = std::any_of(known.begin(), known.end(), [&](const TestName& name) { return part(name) == word; });
      if (!found) missing.push_back(std::string(option) + " " + word);
    }
  };
  check_words(fixtures, "-f", [](const TestName& name) { return name.fixture; });
  check_words(variants, "-v", [](const TestName& name) { return name.variant; });
  check_words(tests, "-t", [](const TestName& name) { return name.test; });
  check_words(full, "-r", [](const TestName& name) { return name.full(); });
  return missing;
}

}  // namespace vfiolab::harness
