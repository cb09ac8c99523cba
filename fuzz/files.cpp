// The files a lab guest sends back (lab::parse_sent_files) and the base64
// they come in (lab::decode_base64).
#include "files.h"
#include "fuzz.h"

#include <algorithm>

namespace {

using namespace vfiolab;
using fuzz::require;

// RFC 4648 base64 with padding, in lines of 76 characters as coreutils'
// base64 writes them.
std::string encode_base64(std::string_view bytes) {
  constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t at = 0; at < bytes.size(); at += 3) {
    std::uint32_t group = 0;
    const std::size_t have = std::min<std::size_t>(3, bytes.size() - at);
    for (std::size_t i = 0; i < 3; ++i) {
      group = (group << 8) | (i < have ? static_cast<unsigned char>(bytes[at + i]) : 0u);
    }
    for (std::size_t i = 0; i < 4; ++i) {
      out += i <= have ? alphabet[(group >> (18 - 6 * i)) & 0x3f] : '=';
    }
  }
  std::string lines;
  for (std::size_t at = 0; at < out.size(); at += 76) lines += out.substr(at, 76) + "\n";
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = fuzz::as_text(data, size);

  // Any bytes, encoded, decode to themselves.
  const auto decoded_encoding = lab::decode_base64(encode_base64(text));
  require(decoded_encoding && *decoded_encoding == text, "decode_base64 undoes an encoding");

  // What decodes is at most three bytes for four characters, and encodes to
  // the same characters again when they were written the standard way.
  if (const auto bytes = lab::decode_base64(text)) {
    std::string letters;
    std::copy_if(text.begin(), text.end(), std::back_inserter(letters),
                 [](char c) { return c != ' ' && c != '\n' && c != '\r' && c != '\t' && c != '\v' && c != '\f'; });
    require(letters.size() % 4 == 0 && bytes->size() <= letters.size() / 4 * 3, "four characters make three bytes");
    std::string again = encode_base64(*bytes);
    std::erase(again, '\n');
    require(again.size() == letters.size(), "a decoding encodes to as many characters");
  }

  // The stream: names never leave the folder, and a file is decoded only
  // when it is whole.
  for (const auto& file : lab::parse_sent_files(text)) {
    require(file.name.find('/') == std::string::npos, "a received name has no '/'");
    require(!(file.truncated && file.bytes), "a truncated file is not decoded");
    if (file.bytes) require(lab::decode_base64(file.base64) == file.bytes, "a file's bytes are its base64 decoded");
  }
  return 0;
}
