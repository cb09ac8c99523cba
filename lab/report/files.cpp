#include "files.h"

#include <array>
#include <cstdint>

namespace vfiolab::lab {

namespace {

constexpr std::string_view kBegin = "vfiolab-file-begin ";
constexpr std::string_view kEnd = "vfiolab-file-end";

// The value of each base64 character, or -1.
constexpr std::array<int, 256> base64_values() {
  std::array<int, 256> values{};
  for (int& value : values) value = -1;
  constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (std::size_t i = 0; i < alphabet.size(); ++i) values[static_cast<unsigned char>(alphabet[i])] = static_cast<int>(i);
  return values;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'; }

void finish(std::vector<SentFile>& files, SentFile& file, bool ended) {
  file.truncated = !ended;
  if (ended) file.bytes = decode_base64(file.base64);
  files.push_back(std::move(file));
}

}  // namespace

std::optional<std::string> decode_base64(std::string_view text) {
  static constexpr auto values = base64_values();
  std::string out;
  std::uint32_t group = 0;
  int have = 0;        // characters in the current group of four
  int padding = 0;     // '=' in it: only more '=' may follow, up to its end
  bool ended = false;  // a padded group ended the data
  for (char c : text) {
    if (is_space(c)) continue;
    if (ended) return std::nullopt;
    if (c == '=') {
      // "xx==" and "xxx=" are the only places padding may stand.
      if (have < 2) return std::nullopt;
      ++padding;
      group <<= 6;
    } else {
      const int value = values[static_cast<unsigned char>(c)];
      if (value < 0 || padding > 0) return std::nullopt;
      group = (group << 6) | static_cast<std::uint32_t>(value);
    }
    if (++have < 4) continue;
    out.push_back(static_cast<char>(group >> 16));
    if (padding < 2) out.push_back(static_cast<char>((group >> 8) & 0xff));
    if (padding < 1) out.push_back(static_cast<char>(group & 0xff));
    ended = padding > 0;
    have = 0;
    group = 0;
  }
  if (have != 0) return std::nullopt;
  return out;
}

std::vector<SentFile> parse_sent_files(std::string_view stream) {
  std::vector<SentFile> files;
  std::optional<SentFile> open;
  while (!stream.empty()) {
    const std::size_t newline = stream.find('\n');
    std::string_view line = stream.substr(0, newline);
    stream.remove_prefix(newline == std::string_view::npos ? stream.size() : newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.starts_with(kBegin)) {
      if (open) finish(files, *open, false);
      open.emplace();
      open->name = line.substr(kBegin.size());
      for (char& c : open->name) {
        if (c == '/') c = '_';
      }
    } else if (line == kEnd) {
      if (open) finish(files, *open, true);
      open.reset();
    } else if (open) {
      if (!open->base64.empty()) open->base64 += '\n';
      open->base64 += line;
    }
  }
  if (open) finish(files, *open, false);
  return files;
}

}  // namespace vfiolab::lab
