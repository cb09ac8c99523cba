// The kernel's log as /dev/kmsg serves it: the records logged from a moment
// on. Nothing here knows about VFIO; the IOMMU fault parser (iommu_fault.h)
// and the tests read through it.
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/unique_fd.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace vfiolab {

// A kernel log record: its level (0 KERN_EMERG .. 7 KERN_DEBUG), when it
// was logged (microseconds since boot, the printk clock /dev/kmsg reports)
// and its message.
struct LogRecord {
  int level = 0;
  std::uint64_t usec = 0;
  std::string message;
};

// Reads /dev/kmsg from the moment it was opened (earlier messages are
// skipped). Needs CAP_SYSLOG or a permissive dmesg_restrict.
class KernelLogReader {
 public:
  static Result<KernelLogReader> open();
  // The messages logged since open() or the last call, without their
  // record headers.
  std::vector<std::string> read_new();
  // The same, whole records.
  std::vector<LogRecord> read_new_records();
  // Blocks until a new record can be read or `timeout` passed; true when
  // one can.
  bool wait(std::chrono::milliseconds timeout);

 private:
  explicit KernelLogReader(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace vfiolab
