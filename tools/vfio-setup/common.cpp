#include "common.h"

#include "vfiolab/text.h"
#include "vfiolab/unique_fd.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <system_error>

namespace vfiolab::setup {
namespace fs = std::filesystem;

void say(const std::string& text) { fmt::print(stderr, "vfio-setup: {}\n", text); }
void say(const Error& error) { say(error.message()); }

fs::path state_dir() {
  const char* dir = std::getenv("VFIO_SETUP_STATE_DIR");
  return dir && *dir ? fs::path(dir) : fs::path("/run/vfiolab/vfio-setup");
}

fs::path state_file(const std::string& bdf) { return state_dir() / (bdf + ".state"); }
fs::path hugepage_state_file() { return state_dir() / "hugepages.state"; }


std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

Error on_device(const std::string& bdf, std::string operation, const Error& cause) {
  if (cause.errnum == 0) return device_error(0, bdf, std::move(operation), cause.message());
  std::string what = cause.context.empty() ? cause.operation : fmt::format("{} {}", cause.operation, cause.context);
  return device_error(cause.errnum, bdf, std::move(operation), std::move(what));
}

Result<void> write_sysfs(const fs::path& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd && ::write(fd.get(), value.data(), value.size()) == static_cast<ssize_t>(value.size())) return {};
  const int err = errno;
  return std::unexpected(make_error(err, fmt::format("writing '{}' to {}", trimmed(std::string(value)), path.string())));
}

Result<void> write_state(const fs::path& path, const std::string& content) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return std::unexpected(make_error(ec.value(), "cannot create " + path.parent_path().string()));
  fs::path temporary = path;
  temporary += ".tmp";
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) {
    const int err = errno;
    return std::unexpected(make_error(err, "cannot write " + temporary.string()));
  }
  if (::write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()) ||
      ::fsync(fd.get()) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "cannot write " + temporary.string()));
  }
  fd.reset();
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "cannot write " + path.string()));
  }
  return {};
}

Result<void> remove_state(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return std::unexpected(make_error(ec.value(), "cannot remove " + path.string()));
  return {};
}

std::string driver_or_none(const std::optional<std::string>& driver) { return driver ? *driver : std::string("(none)"); }

Result<std::optional<DeviceState>> load_state(const std::string& bdf) {
  const fs::path file = state_file(bdf);
  auto text = text::read_file_if_present(file);
  if (!text) return std::unexpected(on_device(bdf, "load state", text.error()));
  if (!*text) return std::nullopt;
  auto state = parse_device_state(**text);
  if (!state) {
    return std::unexpected(device_error(
        0, bdf, "load state",
        fmt::format("state file {} is corrupt ({}); not trusting it: check the device by hand, then remove the file",
                    file.string(), state.error().context)));
  }
  if (state->bdf != bdf) {
    return std::unexpected(device_error(
        0, bdf, "load state", fmt::format("state file {} names {}; not trusting it", file.string(), state->bdf)));
  }
  return std::optional<DeviceState>(std::move(*state));
}

Result<std::vector<std::string>> recorded_devices() {
  const fs::path dir = state_dir();
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string file = it->path().filename().string();
    if (file.ends_with(".state") && file != hugepage_state_file().filename()) {
      names.push_back(file.substr(0, file.size() - 6));
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return std::unexpected(make_error(ec.value(), "cannot list " + dir.string()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<void> require_root(std::string operation, std::string_view why) {
  if (::geteuid() == 0) return {};
  return std::unexpected(make_error(0, std::move(operation), fmt::format("must run as root: {}", why)));
}

Result<unsigned> parse_count(std::string_view text, std::string operation) {
  text = text::trim(text);
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return std::unexpected(make_error(0, std::move(operation), fmt::format("'{}' is not a count", text)));
  }
  return value;
}

}  // namespace vfiolab::setup
