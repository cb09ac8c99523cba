#include "vfiolab/vf_token.h"

#include <fmt/format.h>

namespace vfiolab {
namespace {

constexpr std::size_t kTextLength = 36;

bool is_dash_position(std::size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Error token_error(std::string_view text, std::string why) {
  return make_error(0, "VfToken::parse", fmt::format("'{}' is no UUID: {}", text, why));
}

}  // namespace

Result<VfToken> VfToken::parse(std::string_view text) {
  if (text.size() != kTextLength) {
    return std::unexpected(token_error(text, fmt::format("{} characters, not {} (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                                                         text.size(), kTextLength)));
  }
  VfToken token;
  std::size_t nibble = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (is_dash_position(i)) {
      if (text[i] != '-') return std::unexpected(token_error(text, fmt::format("'-' expected at {}", i)));
      continue;
    }
    const int value = hex_value(text[i]);
    if (value < 0) return std::unexpected(token_error(text, fmt::format("'{}' at {} is not a hex digit", text[i], i)));
    token.bytes[nibble / 2] = static_cast<std::uint8_t>(token.bytes[nibble / 2] | (nibble % 2 ? value : value << 4));
    ++nibble;
  }
  return token;
}

std::string VfToken::str() const {
  std::string text;
  text.reserve(kTextLength);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    text += fmt::format("{:02x}", bytes[i]);
  }
  return text;
}

}  // namespace vfiolab
