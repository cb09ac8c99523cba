#include "vfiolab/text.h"

#include "vfiolab/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <charconv>

namespace vfiolab::text {
namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

}  // namespace

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

std::string_view next_word(std::string_view& text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  std::size_t end = 0;
  while (end < text.size() && !is_space(text[end])) ++end;
  std::string_view word = text.substr(0, end);
  text.remove_prefix(end);
  return word;
}

Result<std::string> read_file(const std::filesystem::path& file) {
  // read(2) rather than a stream: a stream can throw (a directory, an I/O
  // error), and the libraries never throw.
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    return std::unexpected(make_error(err, "open " + file.string()));
  }
  std::string bytes;
  char chunk[4096];
  for (;;) {
    const ssize_t got = ::read(fd.get(), chunk, sizeof chunk);
    if (got == 0) return bytes;
    if (got < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      return std::unexpected(make_error(err, "read " + file.string()));
    }
    bytes.append(chunk, static_cast<std::size_t>(got));
  }
}

Result<std::optional<std::string>> read_file_if_present(const std::filesystem::path& file) {
  auto bytes = read_file(file);
  if (bytes) return std::optional<std::string>(std::move(*bytes));
  if (bytes.error().errnum == ENOENT) return std::optional<std::string>();
  return std::unexpected(std::move(bytes.error()));
}

Result<std::string_view> option_value(int argc, char* const* argv, int& at) {
  if (at + 1 >= argc) return std::unexpected(make_error(0, fmt::format("{} needs a value", argv[at])));
  return std::string_view(argv[++at]);
}

Result<unsigned long> positive_number(std::string_view option, std::string_view text, std::string_view unit) {
  unsigned long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 10);
  if (ec == std::errc() && end == text.data() + text.size() && value > 0) return value;
  return std::unexpected(make_error(0, fmt::format("{} wants a positive whole number{}{}, not '{}'", option,
                                                   unit.empty() ? "" : " of ", unit, text)));
}

}  // namespace vfiolab::text
