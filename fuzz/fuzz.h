// What the fuzz targets share: a property that must hold, and the input as
// text. A broken property aborts, which libFuzzer reports as a crash with
// the input that broke it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace vfiolab::fuzz {

inline void require(bool holds, const char* property) {
  if (holds) return;
  std::fprintf(stderr, "fuzz: property broken: %s\n", property);
  std::abort();
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The input cut in two at its first byte 0 (the whole of it and nothing when
// it has none), for targets that take two texts.
struct Halves {
  std::string_view first;
  std::string_view second;
};
inline Halves split_at_nul(std::string_view text) {
  const auto nul = text.find('\0');
  if (nul == std::string_view::npos) return {text, {}};
  return {text.substr(0, nul), text.substr(nul + 1)};
}

}  // namespace vfiolab::fuzz

#define VFIOLAB_FUZZ_REQUIRE(condition) ::vfiolab::fuzz::require((condition), #condition)
