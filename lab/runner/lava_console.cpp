#include "lava_console.h"

#include "vfiolab/kmsg.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <sys/klog.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <fstream>

namespace vfiolab::lab {
namespace {

constexpr int kConsoleLevel = 8;  // SYSLOG_ACTION_CONSOLE_LEVEL
constexpr int kQuietLevel = 1;    // KERN_EMERG alone still prints itself

// The console's log level now: the first field of /proc/sys/kernel/printk.
std::optional<int> console_level() {
  std::ifstream in("/proc/sys/kernel/printk");
  int level = 0;
  if (in >> level) return level;
  return std::nullopt;
}

// "ok" or "not ok" and the directive of a program's own result line, as a
// LAVA result.
std::string program_result(std::string_view verdict, std::string_view directive) {
  if (verdict != "ok") return "fail";
  return directive.starts_with(" # SKIP") ? "skip" : "pass";
}

}  // namespace

std::optional<LavaCase> lava_case(std::string_view line) {
  bool ok = true;
  if (line.starts_with("ok ")) {
    line.remove_prefix(3);
  } else if (line.starts_with("not ok ")) {
    ok = false;
    line.remove_prefix(7);
  } else {
    return std::nullopt;
  }
  const auto number_end = line.find_first_not_of("0123456789");
  if (number_end == 0) return std::nullopt;
  std::string_view number = line.substr(0, number_end);
  line.remove_prefix(number_end == std::string_view::npos ? line.size() : number_end);
  if (line.starts_with(" ")) line.remove_prefix(1);
  std::string_view name = line, directive;
  if (const auto hash = line.find(" # "); hash != std::string_view::npos) {
    name = line.substr(0, hash);
    directive = line.substr(hash + 3);
  } else if (line.starts_with("# ")) {
    name = {};
    directive = line.substr(2);
  }
  LavaCase result;
  result.id = name.empty() ? std::string(number) : std::string(name);
  for (char& c : result.id) {
    if (std::isspace(static_cast<unsigned char>(c))) c = '_';
  }
  const bool skip = directive.size() >= 4 && std::toupper(static_cast<unsigned char>(directive[0])) == 'S' &&
                    std::toupper(static_cast<unsigned char>(directive[1])) == 'K' &&
                    std::toupper(static_cast<unsigned char>(directive[2])) == 'I' &&
                    std::toupper(static_cast<unsigned char>(directive[3])) == 'P';
  result.result = !ok ? "fail" : skip ? "skip" : "pass";
  if (skip) {
    directive.remove_prefix(4);
    while (directive.starts_with(" ")) directive.remove_prefix(1);
    result.reason = std::string(directive);
  }
  return result;
}

LavaConsole::LavaConsole(const std::string& path, std::vector<std::string> names, bool relay_kernel_log)
    : fd_(::open(path.c_str(), O_WRONLY | O_NOCTTY | O_APPEND | O_CLOEXEC)),
      names_(std::move(names)),
      done_(names_.size()) {
  if (!fd_ || !relay_kernel_log) return;
  auto reader = KernelLogReader::open();
  if (!reader) {
    write_whole(fmt::format("vfiolab-lava: the kernel log is not relayed ({}): its lines may cut into these\n",
                            reader.error().message()));
    return;
  }
  // The reader is at the log's end before the level drops: a message in
  // between would print on its own and be relayed too, none is lost.
  saved_level_ = console_level();
  if (!saved_level_ || ::klogctl(kConsoleLevel, nullptr, kQuietLevel) != 0) {
    saved_level_.reset();
    write_whole("vfiolab-lava: the console's log level could not be lowered: kernel lines may cut into these\n");
    return;
  }
  relay_ = std::thread([this, reader = std::move(*reader)]() mutable {
    auto relay = [&] {
      for (const auto& record : reader.read_new_records()) {
        // What the console would have printed at its own level, less what
        // prints itself at the lowered one.
        if (record.level < kQuietLevel || record.level >= *saved_level_) continue;
        const std::string stamp = fmt::format("[{:5}.{:06}] ", record.usec / 1000000, record.usec % 1000000);
        std::string text = stamp;
        // /dev/kmsg escapes a message's own line breaks.
        for (std::size_t i = 0; i < record.message.size(); ++i) {
          if (record.message.compare(i, 4, "\\x0a") == 0) {
            text += "\n" + stamp;
            i += 3;
          } else {
            text += record.message[i];
          }
        }
        write_whole(text + "\n");
      }
    };
    while (!stop_.load()) {
      if (reader.wait(std::chrono::milliseconds(200))) relay();
    }
    relay();
  });
}

LavaConsole::~LavaConsole() { close(); }

void LavaConsole::close() {
  if (relay_.joinable()) {
    stop_.store(true);
    relay_.join();
  }
  if (saved_level_) {
    ::klogctl(kConsoleLevel, nullptr, *saved_level_);
    saved_level_.reset();
  }
}

void LavaConsole::write_whole(std::string_view text) {
  std::lock_guard lock(write_mutex_);
  while (!text.empty()) {
    const ssize_t n = ::write(fd_.get(), text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

void LavaConsole::ktap(std::string_view text) {
  std::string prefixed;
  while (!text.empty()) {
    const auto end = text.find('\n');
    prefixed += fmt::format("vfiolab-ktap: {}\n", text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
  write_whole(prefixed);
}

void LavaConsole::finished(std::size_t entry, const std::vector<std::string>& block, std::string_view verdict,
                           std::string_view directive) {
  if (entry >= done_.size()) return;
  done_[entry] = Done{block, std::string(verdict), std::string(directive)};
  // LAVA's monitors wait for one program after another, in the order the
  // job lists them: the plan's.
  for (; next_ < done_.size() && done_[next_]; ++next_) {
    const Done& done = *done_[next_];
    std::string text = fmt::format("vfiolab-lava: begin {}\n", names_[next_]);
    for (const auto& line : done.block) {
      // The program's own results: one level in, as the runner nests them.
      if (!line.starts_with("    ") || line.starts_with("     ")) continue;
      if (auto c = lava_case(std::string_view(line).substr(4))) {
        text += fmt::format("vfiolab-lava: case {} {}{}{}\n", c->id, c->result, c->reason.empty() ? "" : " ",
                            c->reason);
      }
    }
    const std::string result = program_result(done.verdict, done.directive);
    text += fmt::format("vfiolab-lava: case program {}{}\n", result,
                        result == "skip" ? done.directive.substr(std::string_view(" # SKIP").size()) : "");
    text += fmt::format("vfiolab-lava: end {} {}\n", names_[next_], result);
    write_whole(text);
  }
}

}  // namespace vfiolab::lab
