// The harness's side of the error model: the libraries return Result<T> and
// never throw; a test decides what an error means. check() is for a call
// whose failure fails the test wherever it happens (inside an expression, a
// helper, SetUp): it throws, and GoogleTest reports the exception, with the
// library's message, as that test's failure. The macros below are for test
// bodies that want a SKIP for an unsupported error (VFIOLAB_ASSERT_OK), or
// that go on after a failed call (VFIOLAB_EXPECT_OK). These are the only
// ways a test consumes an error; a test that expects one checks the error
// itself (`ASSERT_FALSE(x)`, `x.error().errnum`).
//
//   auto buffer = check(DmaBuffer::allocate(...));   // the value, or FAIL
//   VFIOLAB_ASSERT_OK(device.reset());               // SKIP or FAIL, and stop
//   auto info = device.irq_info(index);
//   VFIOLAB_EXPECT_OK(info);                         // FAIL and go on: a named
//   return info ? info->count : 0;                   // Result keeps its value
#pragma once

#include "vfiolab/error.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace vfiolab::harness {

class CheckFailed : public std::runtime_error {
 public:
  explicit CheckFailed(Error error, std::string_view doing = {})
      : std::runtime_error(doing.empty() ? error.message() : std::string(doing) + ": " + error.message()),
        error_(std::move(error)) {}
  const Error& error() const { return error_; }

 private:
  Error error_;
};

// The value, or the test fails with the error's message.
template <typename T>
T check(Result<T> result) {
  if (!result) throw CheckFailed(std::move(result.error()));
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

// The same, with what the test was doing (which of many) before the message:
//   check(driver.init(region), fmt::format("init #{}", i));
template <typename T>
T check(Result<T> result, std::string_view doing) {
  if (!result) throw CheckFailed(std::move(result.error()), doing);
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

}  // namespace vfiolab::harness

namespace vfiolab {
using harness::check;
}  // namespace vfiolab

// The call succeeded, or the test stops here: SKIP when the error says the
// machine lacks what was asked, FAIL otherwise. `expr` is a call or a named
// Result (not copied: a Result of a move-only value stays usable).
#define VFIOLAB_ASSERT_OK(expr)                                                      \
  do {                                                                               \
    auto&& vfiolab_ok_ = (expr);                                                       \
    if (!vfiolab_ok_) {                                                              \
      if (vfiolab_ok_.error().unsupported) GTEST_SKIP() << vfiolab_ok_.error();      \
      FAIL() << #expr << ": " << vfiolab_ok_.error();                                \
    }                                                                                \
  } while (0)

// The call succeeded, or the test goes on with a failure recorded. As
// above, `expr` may name a Result whose value the test goes on to use.
#define VFIOLAB_EXPECT_OK(expr)                                                      \
  do {                                                                               \
    auto&& vfiolab_ok_ = (expr);                                                       \
    if (!vfiolab_ok_) ADD_FAILURE() << #expr << ": " << vfiolab_ok_.error();         \
  } while (0)
