// The one error type of vfiolab's libraries (core, drivers, KVM, reporting)
// and tools: what failed (the call or ioctl), on which device, with what
// detail, the errno, and whether the failure means "this machine cannot do
// it" (a SKIP) rather than "it went wrong" (a FAIL).
//
// The rule, everywhere outside the test harness:
// - a call that can fail returns Result<T>; no library function throws, and
//   no destructor can fail;
// - names carry no try_ prefix: the return type says the call can fail, and
//   a Result left unchecked is a compiler warning;
// - errno is read into a local right after the call that set it, before
//   anything else runs (formatting a message can change errno).
// The harness turns an Error into a test failure or SKIP (harness/check.h).
#pragma once

#include <expected>
#include <iosfwd>
#include <string>
#include <utility>

namespace vfiolab {

struct Error {
  int errnum = 0;          // the errno, or a chosen one (EINVAL, EPROTO, ...) for failures that are no syscall's
  std::string operation;   // "VFIO_IOMMU_MAP_DMA", "open /dev/vfio/3", "parse resource", ...
  std::string device;      // "0000:00:04.0"; empty when no device is involved
  std::string context;     // "mode iommufd iova 0x10000 size 0x1000", "line 3: ..."
  // The running kernel or machine lacks what was asked (no VFIO cdev, no
  // hugepages in the pool, ...): a test should SKIP, not fail.
  bool unsupported = false;

  // "OPERATION (DEVICE CONTEXT): strerror (ENAME)", or, without an errno,
  // "OPERATION: DEVICE CONTEXT".
  std::string message() const;
};

// Writes message(): for test output (`<< result.error()`).
std::ostream& operator<<(std::ostream& out, const Error& error);

// std::expected that cannot be dropped unnoticed: ignoring one is a
// compiler warning (an error under CI's -Werror). Drop one on purpose with
// (void) and a comment saying why.
template <typename T>
struct [[nodiscard]] Result : std::expected<T, Error> {
  using std::expected<T, Error>::expected;
  Result(std::expected<T, Error> other) : std::expected<T, Error>(std::move(other)) {}
};

// `errnum` is the caller's copy of errno, taken right after the failed call.
Error make_error(int errnum, std::string operation, std::string context = {});
Error unsupported_error(int errnum, std::string operation, std::string context = {});
// An error about one device.
Error device_error(int errnum, std::string device, std::string operation, std::string context = {});
// `cause` as the reason `operation` failed: its message becomes the context,
// its unsupported flag is kept.
Error wrap_error(const Error& cause, int errnum, std::string operation, std::string device = {});

}  // namespace vfiolab

// Passing an error up, the one way: a call whose error is also the caller's
// error goes through these, never a hand-written
// `if (!x) return std::unexpected(x.error());`. The enclosing function
// returns some Result<U>; the error is moved up unchanged (wrap it with
// wrap_error() first when the caller has something to add).
//
//   VFIOLAB_TRY(device.enable_bus_master());
//   VFIOLAB_ASSIGN_OR_RETURN(auto fd, open_file(path));
//   VFIOLAB_ASSIGN_OR_RETURN(size, parse_size(text));   // an existing variable
#define VFIOLAB_TRY(expr)                                                     \
  do {                                                                        \
    auto&& vfiolab_try_ = (expr);                                             \
    if (!vfiolab_try_) return std::unexpected(std::move(vfiolab_try_.error())); \
  } while (0)

#define VFIOLAB_CONCAT_INNER_(a, b) a##b
#define VFIOLAB_CONCAT_(a, b) VFIOLAB_CONCAT_INNER_(a, b)
#define VFIOLAB_ASSIGN_OR_RETURN_(result, lhs, expr)                  \
  auto result = (expr);                                               \
  if (!result) return std::unexpected(std::move(result.error()));     \
  lhs = std::move(*result)
// `lhs` declares a variable (`auto x`, `const auto& y`) or names one.
#define VFIOLAB_ASSIGN_OR_RETURN(lhs, expr) \
  VFIOLAB_ASSIGN_OR_RETURN_(VFIOLAB_CONCAT_(vfiolab_result_, __COUNTER__), lhs, expr)
