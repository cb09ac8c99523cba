#include "state.h"

#include <fmt/format.h>

#include <charconv>
#include <map>
#include <vector>

namespace vfiolab::setup {

namespace {

// A state file that cannot be trusted: no syscall failed, so no errno.
std::unexpected<Error> bad(std::string what) { return std::unexpected(make_error(0, "state file", std::move(what))); }

constexpr std::string_view kDeviceHeader = "vfio-setup device state v1";
constexpr std::string_view kHugepageHeader = "vfio-setup hugepage state v1";
constexpr std::string_view kChecksumKey = "checksum=";

std::string seal(std::string body) {
  body += fmt::format("{}{:016x}\n", kChecksumKey, checksum(body));
  return body;
}

// Splits a sealed file into its key=value lines after checking the header
// and the checksum over everything before the checksum line.
Result<std::map<std::string, std::string>> unseal(std::string_view text, std::string_view header) {
  auto checksum_at = text.rfind(kChecksumKey);
  if (checksum_at == std::string_view::npos || (checksum_at != 0 && text[checksum_at - 1] != '\n')) {
    return bad("no checksum line (torn write?)");
  }
  std::string_view body = text.substr(0, checksum_at);
  std::string_view sum_text = text.substr(checksum_at + kChecksumKey.size());
  if (!sum_text.empty() && sum_text.back() == '\n') sum_text.remove_suffix(1);
  std::uint64_t stored = 0;
  auto [end, error] = std::from_chars(sum_text.data(), sum_text.data() + sum_text.size(), stored, 16);
  if (error != std::errc() || end != sum_text.data() + sum_text.size() || sum_text.size() != 16) {
    return bad(fmt::format("malformed checksum '{}'", sum_text));
  }
  if (stored != checksum(body)) return bad("checksum mismatch (torn write or edited by hand)");

  std::map<std::string, std::string> values;
  bool first = true;
  std::size_t start = 0;
  while (start < body.size()) {
    auto newline = body.find('\n', start);
    if (newline == std::string_view::npos) return bad("last line before the checksum is unterminated");
    std::string_view line = body.substr(start, newline - start);
    start = newline + 1;
    if (first) {
      if (line != header) return bad(fmt::format("first line is '{}', expected '{}'", line, header));
      first = false;
      continue;
    }
    auto equals = line.find('=');
    if (equals == std::string_view::npos) return bad(fmt::format("line without '=': '{}'", line));
    std::string key(line.substr(0, equals));
    if (values.contains(key)) return bad(fmt::format("key '{}' appears twice", key));
    values.emplace(std::move(key), std::string(line.substr(equals + 1)));
  }
  if (first) return bad("empty file");
  return values;
}

Result<unsigned> parse_count(const std::string& key, const std::string& text) {
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return bad(fmt::format("{} is not a count: '{}'", key, text));
  }
  return value;
}

}  // namespace

std::uint64_t checksum(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string serialize(const DeviceState& state) {
  std::string body = fmt::format("{}\nbdf={}\ndriver={}\ndriver_override={}\n", kDeviceHeader, state.bdf, state.driver,
                                 state.driver_override);
  if (state.sriov_numvfs) body += fmt::format("sriov_numvfs={}\n", *state.sriov_numvfs);
  if (state.vfio_pci_enable_sriov) body += fmt::format("vfio_pci_enable_sriov={}\n", *state.vfio_pci_enable_sriov ? 1 : 0);
  return seal(std::move(body));
}

Result<DeviceState> parse_device_state(std::string_view text) {
  VFIOLAB_ASSIGN_OR_RETURN(auto values, unseal(text, kDeviceHeader));
  DeviceState state;
  for (const char* required : {"bdf", "driver", "driver_override"}) {
    if (!values.contains(required)) return bad(fmt::format("missing key '{}'", required));
  }
  for (auto& [key, value] : values) {
    if (key == "bdf") {
      state.bdf = value;
    } else if (key == "driver") {
      state.driver = value;
    } else if (key == "driver_override") {
      state.driver_override = value;
    } else if (key == "sriov_numvfs") {
      VFIOLAB_ASSIGN_OR_RETURN(state.sriov_numvfs, parse_count(key, value));
    } else if (key == "vfio_pci_enable_sriov") {
      if (value != "0" && value != "1") return bad(fmt::format("{} is not 0 or 1: '{}'", key, value));
      state.vfio_pci_enable_sriov = value == "1";
    } else {
      return bad(fmt::format("unknown key '{}'", key));
    }
  }
  if (state.bdf.empty()) return bad("empty bdf");
  // Names go into sysfs paths: refuse anything that could leave the directory.
  if (state.driver.find('/') != std::string::npos || state.driver == "." || state.driver == "..") {
    return bad(fmt::format("driver name '{}' is not a name", state.driver));
  }
  return state;
}

std::string serialize(const HugepageState& state) {
  return seal(fmt::format("{}\npages_2m={}\npages_1g={}\n", kHugepageHeader, state.pages_2m, state.pages_1g));
}

Result<HugepageState> parse_hugepage_state(std::string_view text) {
  VFIOLAB_ASSIGN_OR_RETURN(auto values, unseal(text, kHugepageHeader));
  HugepageState state;
  for (auto& [key, value] : values) {
    VFIOLAB_ASSIGN_OR_RETURN(const unsigned count, parse_count(key, value));
    if (key == "pages_2m") {
      state.pages_2m = count;
    } else if (key == "pages_1g") {
      state.pages_1g = count;
    } else {
      return bad(fmt::format("unknown key '{}'", key));
    }
  }
  if (!values.contains("pages_2m") || !values.contains("pages_1g")) return bad("missing a page count");
  return state;
}

}  // namespace vfiolab::setup
