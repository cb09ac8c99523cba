#include "vfiolab/kmsg.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <string_view>

namespace vfiolab {
namespace {

// One /dev/kmsg record, "prio,seq,usec,flags[,...];message\n" then
// continuation lines " KEY=value".
std::optional<LogRecord> parse_record(std::string_view text) {
  const auto semicolon = text.find(';');
  if (semicolon == std::string_view::npos) return std::nullopt;
  LogRecord record;
  std::string_view header = text.substr(0, semicolon);
  // The first field is the facility times 8 plus the level.
  int prio = 0;
  std::from_chars(header.data(), header.data() + header.size(), prio);
  record.level = prio & 7;
  // The third field is the timestamp.
  for (int field = 0; field < 2; ++field) {
    const auto comma = header.find(',');
    if (comma == std::string_view::npos) return std::nullopt;
    header.remove_prefix(comma + 1);
  }
  std::from_chars(header.data(), header.data() + header.size(), record.usec);
  text.remove_prefix(semicolon + 1);
  record.message = std::string(text.substr(0, text.find('\n')));
  return record;
}

// Reads records until the fd has none left (it is non-blocking).
std::vector<LogRecord> read_records(int fd) {
  std::vector<LogRecord> records;
  char buffer[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      const int err = errno;
      // EPIPE: records were overwritten before we read them: go on with the next.
      if (err == EPIPE || err == EINTR) continue;
      break;  // EAGAIN: nothing more
    }
    if (auto record = parse_record(std::string_view(buffer, static_cast<std::size_t>(n)))) {
      records.push_back(std::move(*record));
    }
  }
  return records;
}

}  // namespace

Result<KernelLogReader> KernelLogReader::open() {
  UniqueFd fd(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    return std::unexpected(make_error(err, "open /dev/kmsg", "reading the kernel log needs CAP_SYSLOG"));
  }
  if (::lseek(fd.get(), 0, SEEK_END) < 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "lseek /dev/kmsg SEEK_END"));
  }
  return KernelLogReader(std::move(fd));
}

std::vector<std::string> KernelLogReader::read_new() {
  std::vector<std::string> messages;
  for (auto& record : read_records(fd_.get())) messages.push_back(std::move(record.message));
  return messages;
}

std::vector<LogRecord> KernelLogReader::read_new_records() { return read_records(fd_.get()); }

bool KernelLogReader::wait(std::chrono::milliseconds timeout) {
  pollfd entry{fd_.get(), POLLIN, 0};
  for (;;) {
    const int ready = ::poll(&entry, 1, static_cast<int>(timeout.count()));
    if (ready < 0 && errno == EINTR) continue;
    return ready > 0;
  }
}

}  // namespace vfiolab
