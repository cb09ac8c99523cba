#include "vfiolab/irq.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace vfiolab {

Result<EventFd> EventFd::create() {
  UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd) {
    const int err = errno;
    return std::unexpected(make_error(err, "eventfd"));
  }
  return EventFd(std::move(fd));
}

Result<std::optional<std::uint64_t>> EventFd::read() {
  std::uint64_t value = 0;
  ssize_t got = ::read(fd_.get(), &value, sizeof(value));
  if (got == sizeof(value)) return value;
  if (got < 0 && errno == EAGAIN) return std::nullopt;
  const int err = errno;
  return std::unexpected(make_error(err, "read eventfd"));
}

Result<std::optional<std::uint64_t>> EventFd::wait(std::chrono::milliseconds timeout) {
  pollfd entry{fd_.get(), POLLIN, 0};
  int ready = ::poll(&entry, 1, static_cast<int>(timeout.count()));
  if (ready < 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "poll eventfd"));
  }
  if (ready == 0) return std::nullopt;
  return read();
}

}  // namespace vfiolab
