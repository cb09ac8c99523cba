#include "lava_console.h"

#include "vfiolab/kmsg.h"
#include "vfiolab/ktap.h"

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

}  // namespace

std::optional<LavaCase> lava_case(std::string_view line) {
  // KTAP's own reading of the line, and of how its result counts.
  auto parsed = ktap::parse_result_line(line);
  if (!parsed || !parsed->number) return std::nullopt;
  LavaCase result;
  result.id = parsed->name.empty() ? std::to_string(*parsed->number) : parsed->name;
  for (char& c : result.id) {
    if (std::isspace(static_cast<unsigned char>(c))) c = '_';
  }
  ktap::Result counted;
  counted.ok = parsed->ok;
  counted.directive = parsed->directive;
  switch (ktap::outcome(counted)) {
    case ktap::Outcome::pass: result.result = "pass"; break;
    case ktap::Outcome::fail: result.result = "fail"; break;
    case ktap::Outcome::skip: result.result = "skip"; break;
  }
  if (parsed->directive == ktap::Directive::skip) result.reason = parsed->reason;
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

void LavaConsole::finished(std::size_t entry, const std::vector<std::string>& block, std::string_view result_line) {
  if (entry >= done_.size()) return;
  done_[entry] = Done{block, std::string(result_line)};
  // LAVA's monitors wait for one program after another, in the order the
  // job lists them: the plan's.
  for (; next_ < done_.size() && done_[next_]; ++next_) {
    const Done& done = *done_[next_];
    std::string text = fmt::format("vfiolab-lava: begin {}\n", names_[next_]);
    auto add_case = [&](std::string_view id, const LavaCase& c) {
      text += fmt::format("vfiolab-lava: case {} {}{}{}\n", id, c.result, c.reason.empty() ? "" : " ", c.reason);
    };
    for (const auto& line : done.block) {
      // The program's own results: one level in, as the runner nests them.
      if (!line.starts_with("    ") || line.starts_with("     ")) continue;
      if (auto c = lava_case(std::string_view(line).substr(4))) add_case(c->id, *c);
    }
    // The runner writes every program's own result line; one it could not
    // read counts as failed.
    const LavaCase own = lava_case(done.result_line).value_or(LavaCase{"program", "fail", ""});
    add_case("program", own);
    text += fmt::format("vfiolab-lava: end {} {}\n", names_[next_], own.result);
    write_whole(text);
  }
}

}  // namespace vfiolab::lab
