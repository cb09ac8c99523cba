#include "vfiolab/error.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace vfiolab {

std::string Error::message() const {
  std::string text = operation;
  // Without an errno the context is the whole story: "op: what is wrong".
  if (!context.empty()) text += errnum != 0 ? fmt::format(" ({})", context) : fmt::format(": {}", context);
  if (errnum != 0) {
    const char* name = strerrorname_np(errnum);
    text += fmt::format(": {} ({})", std::strerror(errnum), name ? name : fmt::format("errno {}", errnum));
  }
  return text;
}

Error errno_error(std::string operation, std::string context) {
  return make_error(errno, std::move(operation), std::move(context));
}

Error make_error(int errnum, std::string operation, std::string context) {
  return Error{errnum, std::move(operation), std::move(context), false};
}

Error unsupported_error(int errnum, std::string operation, std::string context) {
  return Error{errnum, std::move(operation), std::move(context), true};
}

VfioError::VfioError(Error error) : std::runtime_error(error.message()), error_(std::move(error)) {}

}  // namespace vfiolab
