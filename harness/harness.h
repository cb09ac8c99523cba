// The suite's test main: GoogleTest for writing tests, kselftest conventions
// for running them.
//
// - Devices come from trailing BDF arguments or VFIO_SELFTESTS_BDF; with
//   neither, usage is printed and the program exits as SKIP (4).
// - Names read fixture.variant.test: a TEST_P suite instantiated as
//   INSTANTIATE_TEST_SUITE_P(fixture, Suite, values, namer) gives fixture
//   "fixture", the namer's text as the variant; a plain TEST(fixture, test)
//   has no variant.
// - -l lists, -f FIXTURE, -v VARIANT, -t TEST and -r FIXTURE.VARIANT.TEST
//   (each repeatable) select; --gtest_* flags still work.
// - -m MODE picks the IOMMU mode of the fixtures that have no mode variants
//   (default iommufd), so such a program can be run once per mode.
// - Each test runs in its own process with a timeout (-T SECONDS, default 60,
//   or a per-test override), so a crash or hang fails that test alone.
// - KTAP v1 on stdout, a reason on every SKIP; exit 0 pass, 1 fail, 4 skip.
// - A program may add options of its own (ProgramOption) and may declare
//   that it needs no device (VFIOLAB_NO_DEVICE_NEEDED), so it runs without
//   a BDF.
#pragma once

#include "vfiolab/iommu.h"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::harness {

// Every BDF given to the program, the first being the device under test.
const std::vector<std::string>& device_bdfs();
const std::string& device_bdf();

// The mode -m chose, for fixtures without mode variants.
IommuMode iommu_mode();

// A longer (or shorter) timeout for the tests whose full name
// (fixture.variant.test) starts with `prefix`.
struct TimeoutOverride {
  TimeoutOverride(const char* prefix, std::chrono::seconds timeout);
};

// An option of one program, parsed by the harness's main beside its own:
// a switch ("-d"), or an option taking a number ("-n COUNT", checked by
// main) or a text. Define one at namespace scope; tests read it (each
// test's process inherits what main parsed).
class ProgramOption {
 public:
  enum class Kind { flag, number, text };
  ProgramOption(const char* flag, Kind kind, const char* value_name, const char* help);
  const std::string& flag() const { return flag_; }
  Kind kind() const { return kind_; }
  bool takes_value() const { return kind_ != Kind::flag; }
  bool given() const { return given_; }
  // The last value given, or `fallback`.
  std::string value_or(const std::string& fallback) const { return given_ ? value_ : fallback; }
  // The value of a Kind::number option (main refuses values that are not one).
  unsigned long number_or(unsigned long fallback) const;
  std::string usage() const;
  void set(std::string value);

 private:
  std::string flag_;
  Kind kind_;
  std::string value_name_, help_, value_;
  bool given_ = false;
};

// Notes kept across the tests of one run of the program (each test runs
// in a process of its own, so a static variable is not): whether an
// earlier test of this run noted `key`, and noting it. A test run on its
// own (with -r) finds none.
bool run_noted(std::string_view key);
void note_for_run(std::string_view key);

struct NoDeviceNeeded {
  NoDeviceNeeded();
};
bool device_needed();

}  // namespace vfiolab::harness

// At namespace scope in a test file of a program that needs no device.
#define VFIOLAB_NO_DEVICE_NEEDED() static const ::vfiolab::harness::NoDeviceNeeded vfiolab_no_device_needed_{}

// At namespace scope in a test file.
#define VFIOLAB_TEST_TIMEOUT(variable, name_prefix, timeout_seconds) \
  static const ::vfiolab::harness::TimeoutOverride variable{name_prefix, std::chrono::seconds(timeout_seconds)}
