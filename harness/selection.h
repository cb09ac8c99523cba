// kselftest-style names and selection for GoogleTest tests: pure logic, so
// the host unit tests cover it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::harness {

struct TestName {
  std::string fixture;
  std::string variant;  // empty for a test without variants
  std::string test;
  std::string full() const;  // fixture.variant.test, or fixture.test
};

// From GoogleTest's suite and test names: "fixture/Suite" + "test/variant"
// for an instantiated TEST_P, "Suite" + "test" for a TEST.
TestName kselftest_name(std::string_view suite, std::string_view name);

struct Selection {
  std::vector<std::string> fixtures;  // -f
  std::vector<std::string> variants;  // -v
  std::vector<std::string> tests;     // -t
  std::vector<std::string> full;      // -r fixture.variant.test
  // Everything when nothing was asked for; a -r match; or a test whose
  // fixture, variant and test each match what was asked of that part.
  bool selects(const TestName& name) const;
  bool empty() const { return fixtures.empty() && variants.empty() && tests.empty() && full.empty(); }
  // Each word asked for that names no fixture, variant, test or full name
  // among `known`, as its option and the word ("-t typo"): a misspelt
  // filter is an error, never an empty run that passes.
  std::vector<std::string> unmatched(const std::vector<TestName>& known) const;
};

// GoogleTest's --gtest_filter syntax: "POSITIVE[-NEGATIVE]", each a
// ':'-separated list of patterns with '*' and '?' wildcards, matched against
// "Suite.Test". An empty positive part means "*".
bool gtest_filter_matches(std::string_view filter, std::string_view name);

}  // namespace vfiolab::harness
