#include "vfiolab/error.h"

#include <fmt/format.h>

#include <cstring>
#include <ostream>

namespace vfiolab {

std::string Error::message() const {
  std::string text = operation;
  std::string about = device;
  if (!context.empty()) about += about.empty() ? context : " " + context;
  // Without an errno the context is the whole story: "op: what is wrong".
  if (!about.empty()) text += errnum != 0 ? fmt::format(" ({})", about) : fmt::format(": {}", about);
  if (errnum != 0) {
    const char* name = strerrorname_np(errnum);
    text += fmt::format(": {} ({})", std::strerror(errnum), name ? name : fmt::format("errno {}", errnum));
  }
  return text;
}

std::ostream& operator<<(std::ostream& out, const Error& error) { return out << error.message(); }

Error make_error(int errnum, std::string operation, std::string context) {
  return Error{errnum, std::move(operation), {}, std::move(context), false};
}

Error unsupported_error(int errnum, std::string operation, std::string context) {
  return Error{errnum, std::move(operation), {}, std::move(context), true};
}

Error device_error(int errnum, std::string device, std::string operation, std::string context) {
  return Error{errnum, std::move(operation), std::move(device), std::move(context), false};
}

Error wrap_error(const Error& cause, int errnum, std::string operation, std::string device) {
  return Error{errnum, std::move(operation), std::move(device), cause.message(), cause.unsupported};
}

}  // namespace vfiolab
