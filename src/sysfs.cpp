#include "vfiolab/sysfs.h"

#include "vfiolab/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace vfiolab {
namespace fs = std::filesystem;
namespace {

std::optional<unsigned> parse_hex_field(std::string_view text, std::size_t digits) {
  if (text.size() != digits) return std::nullopt;
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::string Bdf::str() const {
  return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", segment, bus, device, function);
}

Result<Bdf> parse_bdf(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::unexpected(
        make_error(0, fmt::format("bad BDF '{}'", text), fmt::format("{} (expected SSSS:BB:DD.F, e.g. 0000:00:04.0)", why)));
  };
  if (text.empty()) return bad("empty");
  if (text.size() > 12) return bad("too long");

  std::string_view rest = text;
  Bdf bdf;
  auto first_colon = rest.find(':');
  if (first_colon == std::string_view::npos) return bad("no ':'");
  if (rest.find(':', first_colon + 1) != std::string_view::npos) {
    auto segment = parse_hex_field(rest.substr(0, first_colon), 4);
    if (!segment) return bad("segment must be 4 hex digits");
    bdf.segment = static_cast<std::uint16_t>(*segment);
    rest.remove_prefix(first_colon + 1);
  }
  auto colon = rest.find(':');
  auto dot = rest.find('.');
  if (colon == std::string_view::npos || dot == std::string_view::npos || dot < colon) {
    return bad("expected bus:device.function after the segment");
  }
  auto bus = parse_hex_field(rest.substr(0, colon), 2);
  if (!bus) return bad("bus must be 2 hex digits");
  auto device = parse_hex_field(rest.substr(colon + 1, dot - colon - 1), 2);
  if (!device) return bad("device must be 2 hex digits");
  if (*device > 0x1f) return bad("device must be at most 1f");
  auto function = parse_hex_field(rest.substr(dot + 1), 1);
  if (!function) return bad("function must be 1 hex digit");
  if (*function > 7) return bad("function must be at most 7");
  bdf.bus = static_cast<std::uint8_t>(*bus);
  bdf.device = static_cast<std::uint8_t>(*device);
  bdf.function = static_cast<std::uint8_t>(*function);
  return bdf;
}

Sysfs::Sysfs(fs::path root) : root_(std::move(root)) {}

fs::path Sysfs::device_dir(const Bdf& bdf) const { return root_ / "bus/pci/devices" / bdf.str(); }

bool Sysfs::exists(const Bdf& bdf) const {
  std::error_code error;
  return fs::exists(device_dir(bdf), error);
}

std::optional<std::string> Sysfs::read_line(const fs::path& file) const {
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line;
}

std::optional<std::string> Sysfs::link_name(const fs::path& link) const {
  std::error_code error;
  fs::path target = fs::read_symlink(link, error);
  if (error) return std::nullopt;
  return target.filename().string();
}

static std::optional<std::uint16_t> parse_id(const std::optional<std::string>& text) {
  if (!text || !text->starts_with("0x")) return std::nullopt;
  auto value = parse_hex_field(std::string_view(*text).substr(2), 4);
  if (!value) return std::nullopt;
  return static_cast<std::uint16_t>(*value);
}

std::optional<std::uint16_t> Sysfs::vendor(const Bdf& bdf) const { return parse_id(read_line(device_dir(bdf) / "vendor")); }

std::optional<std::uint16_t> Sysfs::device_id(const Bdf& bdf) const {
  return parse_id(read_line(device_dir(bdf) / "device"));
}

std::optional<std::string> Sysfs::driver(const Bdf& bdf) const { return link_name(device_dir(bdf) / "driver"); }

std::optional<int> Sysfs::iommu_group(const Bdf& bdf) const {
  auto name = link_name(device_dir(bdf) / "iommu_group");
  if (!name) return std::nullopt;
  int group = 0;
  auto [end, error] = std::from_chars(name->data(), name->data() + name->size(), group);
  if (error != std::errc() || end != name->data() + name->size()) return std::nullopt;
  return group;
}

std::vector<Bdf> Sysfs::iommu_group_members(int group) const {
  std::vector<Bdf> members;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root_ / "kernel/iommu_groups" / std::to_string(group) / "devices", error)) {
    if (auto bdf = parse_bdf(entry.path().filename().string())) members.push_back(*bdf);
  }
  std::sort(members.begin(), members.end());
  return members;
}

std::optional<std::string> Sysfs::vfio_cdev(const Bdf& bdf) const {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(device_dir(bdf) / "vfio-dev", error)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with("vfio")) return name;
  }
  return std::nullopt;
}

std::optional<unsigned> Sysfs::read_unsigned(const fs::path& file) const {
  auto line = read_line(file);
  if (!line) return std::nullopt;
  unsigned value = 0;
  auto [end, error] = std::from_chars(line->data(), line->data() + line->size(), value);
  if (error != std::errc() || end != line->data() + line->size()) return std::nullopt;
  return value;
}

std::optional<unsigned> Sysfs::sriov_numvfs(const Bdf& bdf) const { return read_unsigned(device_dir(bdf) / "sriov_numvfs"); }

std::optional<Bdf> Sysfs::sriov_vf(const Bdf& pf, unsigned index) const {
  auto name = link_name(device_dir(pf) / ("virtfn" + std::to_string(index)));
  if (!name) return std::nullopt;
  auto bdf = parse_bdf(*name);
  return bdf ? std::optional<Bdf>(*bdf) : std::nullopt;
}

std::optional<Bdf> Sysfs::sriov_pf(const Bdf& vf) const {
  auto name = link_name(device_dir(vf) / "physfn");
  if (!name) return std::nullopt;
  auto bdf = parse_bdf(*name);
  return bdf ? std::optional<Bdf>(*bdf) : std::nullopt;
}

std::optional<unsigned> Sysfs::sriov_totalvfs(const Bdf& bdf) const {
  return read_unsigned(device_dir(bdf) / "sriov_totalvfs");
}

Result<std::vector<PciResource>> parse_pci_resources(std::string_view text) {
  std::vector<PciResource> resources;
  int number = 0;
  auto bad = [&](std::string why) {
    return std::unexpected(make_error(0, "parse resource", fmt::format("line {}: {}", number, why)));
  };
  while (!text.empty()) {
    ++number;
    const auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    std::uint64_t values[3] = {};
    for (auto& value : values) {
      const std::string_view word = text::next_word(line);
      if (word.size() < 3 || word.substr(0, 2) != "0x") {
        return bad(fmt::format("'{}' is not a 0x-prefixed number", word));
      }
      auto [end, error] = std::from_chars(word.data() + 2, word.data() + word.size(), value, 16);
      if (error != std::errc() || end != word.data() + word.size()) {
        return bad(fmt::format("'{}' is not a hex number", word));
      }
    }
    if (!text::trim(line).empty()) {
      return bad(fmt::format("more than three numbers ('{}')", text::trim(line)));
    }
    PciResource r{values[0], values[1], values[2]};
    if (r.end < r.start) {
      return bad(fmt::format("end {:#x} below start {:#x}", r.end, r.start));
    }
    resources.push_back(r);
  }
  return resources;
}

Result<std::vector<PciResource>> Sysfs::resources(const Bdf& bdf) const {
  const fs::path file = device_dir(bdf) / "resource";
  auto text = text::read_file(file);
  if (!text) return std::unexpected(text.error());
  auto parsed = parse_pci_resources(*text);
  if (!parsed) parsed.error().operation = fmt::format("parse {}", file.string());
  return parsed;
}

Result<std::vector<std::byte>> Sysfs::config(const Bdf& bdf) const {
  auto text = text::read_file(device_dir(bdf) / "config");
  if (!text) return std::unexpected(text.error());
  std::vector<std::byte> bytes(text->size());
  std::memcpy(bytes.data(), text->data(), text->size());
  return bytes;
}

}  // namespace vfiolab
