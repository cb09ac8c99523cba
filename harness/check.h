// The harness's side of the error model: the libraries return Result<T> and
// never throw; a test decides what an error means. check() is for a call
// whose failure fails the test wherever it happens (inside an expression, a
// helper, SetUp): it throws, and GoogleTest reports the exception, with the
// library's message, as that test's failure. The macros below are for test
// bodies that want a SKIP for an unsupported error.
#pragma once

#include "vfiolab/error.h"

#include <stdexcept>
#include <type_traits>
#include <utility>

namespace vfiolab::harness {

class CheckFailed : public std::runtime_error {
 public:
  explicit CheckFailed(Error error) : std::runtime_error(error.message()), error_(std::move(error)) {}
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

}  // namespace vfiolab::harness

namespace vfiolab {
using harness::check;
}  // namespace vfiolab

// The call succeeded, or the test stops here: SKIP when the error says the
// machine lacks what was asked, FAIL otherwise.
#define VFIOLAB_ASSERT_OK(expr)                                                      \
  do {                                                                               \
    auto vfiolab_ok_ = (expr);                                                       \
    if (!vfiolab_ok_) {                                                              \
      if (vfiolab_ok_.error().unsupported) GTEST_SKIP() << vfiolab_ok_.error();      \
      FAIL() << #expr << ": " << vfiolab_ok_.error();                                \
    }                                                                                \
  } while (0)

// The call succeeded, or the test goes on with a failure recorded.
#define VFIOLAB_EXPECT_OK(expr)                                                      \
  do {                                                                               \
    auto vfiolab_ok_ = (expr);                                                       \
    if (!vfiolab_ok_) ADD_FAILURE() << #expr << ": " << vfiolab_ok_.error();         \
  } while (0)
