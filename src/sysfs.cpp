#include "vfiolab/sysfs.h"

#include "vfiolab/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>

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

Result<bool> Sysfs::exists(const Bdf& bdf) const {
  std::error_code error;
  const bool there = fs::exists(device_dir(bdf), error);
  if (error) return std::unexpected(make_error(error.value(), "stat " + device_dir(bdf).string()));
  return there;
}

namespace {

// The first line of a sysfs attribute's text, without its trailing whitespace.
std::string first_line(std::string line) {
  line.erase(std::min(line.find('\n'), line.size()));
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line;
}

Result<std::string> read_line(const fs::path& file) {
  VFIOLAB_ASSIGN_OR_RETURN(std::string text, text::read_file(file));
  return first_line(std::move(text));
}

// read_line(), or empty when the file does not exist.
Result<std::optional<std::string>> read_line_if_present(const fs::path& file) {
  VFIOLAB_ASSIGN_OR_RETURN(auto text, text::read_file_if_present(file));
  if (!text) return std::optional<std::string>();
  return std::optional<std::string>(first_line(std::move(*text)));
}

// The last component of a link's target; empty when there is no link.
Result<std::optional<std::string>> link_name(const fs::path& link) {
  std::error_code error;
  const fs::path target = fs::read_symlink(link, error);
  if (error == std::errc::no_such_file_or_directory) return std::optional<std::string>();
  if (error) return std::unexpected(make_error(error.value(), "readlink " + link.string()));
  return std::optional<std::string>(target.filename().string());
}

// A file (or link) whose text is not what the kernel writes there.
Error malformed(const fs::path& file, std::string_view text, std::string_view wanted) {
  return make_error(0, "parse " + file.string(), fmt::format("'{}' is not {}", text, wanted));
}

template <typename Number>
std::optional<Number> parse_decimal(std::string_view text) {
  Number value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// `vendor` and `device`: "0x" and four hex digits.
Result<std::uint16_t> read_id(const fs::path& file) {
  VFIOLAB_ASSIGN_OR_RETURN(const std::string line, read_line(file));
  const auto value = line.starts_with("0x") ? parse_hex_field(std::string_view(line).substr(2), 4) : std::nullopt;
  if (!value) return std::unexpected(malformed(file, line, "a 16-bit ID (0xHHHH)"));
  return static_cast<std::uint16_t>(*value);
}

// A decimal count; empty when the file does not exist.
Result<std::optional<unsigned>> read_count(const fs::path& file) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto line, read_line_if_present(file));
  if (!line) return std::optional<unsigned>();
  const auto value = parse_decimal<unsigned>(*line);
  if (!value) return std::unexpected(malformed(file, *line, "a count"));
  return value;
}

// The device a link (virtfnN, physfn) points at; empty when there is no link.
Result<std::optional<Bdf>> linked_device(const fs::path& link) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto name, link_name(link));
  if (!name) return std::optional<Bdf>();
  auto bdf = parse_bdf(*name);
  if (!bdf) return std::unexpected(malformed(link, *name, "a PCI device"));
  return std::optional<Bdf>(*bdf);
}

}  // namespace

Result<std::uint16_t> Sysfs::vendor(const Bdf& bdf) const { return read_id(device_dir(bdf) / "vendor"); }

Result<std::uint16_t> Sysfs::device_id(const Bdf& bdf) const { return read_id(device_dir(bdf) / "device"); }

Result<std::optional<std::string>> Sysfs::driver(const Bdf& bdf) const { return link_name(device_dir(bdf) / "driver"); }

Result<std::optional<int>> Sysfs::iommu_group(const Bdf& bdf) const {
  const fs::path link = device_dir(bdf) / "iommu_group";
  VFIOLAB_ASSIGN_OR_RETURN(const auto name, link_name(link));
  if (!name) return std::optional<int>();
  const auto group = parse_decimal<int>(*name);
  if (!group) return std::unexpected(malformed(link, *name, "an IOMMU group number"));
  return group;
}

Result<std::vector<Bdf>> Sysfs::iommu_group_members(int group) const {
  const fs::path dir = root_ / "kernel/iommu_groups" / std::to_string(group) / "devices";
  std::vector<Bdf> members;
  std::error_code error;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    if (auto bdf = parse_bdf(it->path().filename().string())) members.push_back(*bdf);
  }
  if (error) return std::unexpected(make_error(error.value(), "list " + dir.string()));
  std::sort(members.begin(), members.end());
  return members;
}

Result<std::optional<std::string>> Sysfs::vfio_cdev(const Bdf& bdf) const {
  const fs::path dir = device_dir(bdf) / "vfio-dev";
  std::error_code error;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    std::string name = it->path().filename().string();
    if (name.starts_with("vfio")) return std::optional<std::string>(std::move(name));
  }
  if (error && error != std::errc::no_such_file_or_directory) {
    return std::unexpected(make_error(error.value(), "list " + dir.string()));
  }
  return std::optional<std::string>();
}

Result<std::optional<unsigned>> Sysfs::sriov_numvfs(const Bdf& bdf) const {
  return read_count(device_dir(bdf) / "sriov_numvfs");
}

Result<std::optional<unsigned>> Sysfs::sriov_totalvfs(const Bdf& bdf) const {
  return read_count(device_dir(bdf) / "sriov_totalvfs");
}

Result<std::optional<Bdf>> Sysfs::sriov_vf(const Bdf& pf, unsigned index) const {
  return linked_device(device_dir(pf) / ("virtfn" + std::to_string(index)));
}

Result<std::optional<Bdf>> Sysfs::sriov_pf(const Bdf& vf) const { return linked_device(device_dir(vf) / "physfn"); }

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
  VFIOLAB_ASSIGN_OR_RETURN(const std::string text, text::read_file(file));
  auto parsed = parse_pci_resources(text);
  if (!parsed) parsed.error().operation = fmt::format("parse {}", file.string());
  return parsed;
}

Result<std::vector<std::byte>> Sysfs::config(const Bdf& bdf) const {
  VFIOLAB_ASSIGN_OR_RETURN(const std::string text, text::read_file(device_dir(bdf) / "config"));
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

}  // namespace vfiolab
