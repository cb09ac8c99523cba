// Interrupt plumbing shared by VFIO and KVM tests: an eventfd per vector and
// what VFIO says an interrupt index offers.
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/unique_fd.h"

#include <chrono>
#include <cstdint>
#include <optional>

namespace vfiolab {

struct IrqInfo {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;  // VFIO_IRQ_INFO_*
  std::uint32_t count = 0;  // vectors the device offers at this index
};

// A non-blocking eventfd: read() never waits, wait() waits with a timeout.
class EventFd {
 public:
  static Result<EventFd> create();
  int fd() const { return fd_.get(); }
  // The counter, reset to 0 by the read; nullopt when it was already 0.
  Result<std::optional<std::uint64_t>> read();
  // Waits until the counter is nonzero or the timeout passes; then reads it.
  Result<std::optional<std::uint64_t>> wait(std::chrono::milliseconds timeout);

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace vfiolab
