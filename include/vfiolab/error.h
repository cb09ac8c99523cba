// Errors of the low layer: what failed (the ioctl or call), on what (device,
// IOMMU mode, address), and the errno. Tests that expect a failure assert on
// errnum; the checked layer turns an Error into a VfioError exception whose
// message says all three.
#pragma once

#include <expected>
#include <stdexcept>
#include <string>
#include <utility>

namespace vfiolab {

struct Error {
  int errnum = 0;          // errno, or 0 for failures that are not a syscall's
  std::string operation;   // "VFIO_IOMMU_MAP_DMA", "open /dev/vfio/3", ...
  std::string context;     // "0000:00:04.0 iova 0x10000 size 0x1000", ...
  // The running kernel or machine lacks what was asked (no VFIO cdev, no
  // hugepages in the pool, ...): a test should SKIP, not fail.
  bool unsupported = false;

  std::string message() const;
};

template <typename T>
using Result = std::expected<T, Error>;

// An Error from the current errno.
Error errno_error(std::string operation, std::string context = {});
Error make_error(int errnum, std::string operation, std::string context = {});
Error unsupported_error(int errnum, std::string operation, std::string context);

class VfioError : public std::runtime_error {
 public:
  explicit VfioError(Error error);
  const Error& error() const { return error_; }

 private:
  Error error_;
};

// The checked layer: the value, or a VfioError.
template <typename T>
T check(Result<T> result) {
  if (!result) throw VfioError(std::move(result.error()));
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

}  // namespace vfiolab
