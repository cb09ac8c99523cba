#include "vfiolab/capabilities.h"

#include <fmt/format.h>
#include <linux/vfio.h>

#include <bitset>
#include <cstddef>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace vfiolab {
namespace {

constexpr std::size_t max_info_capabilities = 64;

// PCI configuration space layout (PCI Local Bus spec / PCIe base spec).
constexpr std::size_t pci_min_config_size = 64;  // the standard header every function has
constexpr std::size_t pci_config_size = 256;
constexpr std::size_t pci_ext_config_size = 4096;
constexpr std::size_t pci_status_offset = 0x06;
constexpr std::uint16_t pci_status_cap_list = 1u << 4;
constexpr std::size_t pci_cap_pointer_offset = 0x34;
constexpr std::size_t pci_first_cap_offset = 0x40;   // capabilities live after the standard header
constexpr std::uint8_t pci_cap_pointer_mask = 0xfc;  // the low 2 bits are reserved
constexpr std::size_t pci_max_capabilities = (pci_config_size - pci_first_cap_offset) / 4;     // 48
constexpr std::size_t pci_max_ext_capabilities = (pci_ext_config_size - pci_config_size) / 4;  // 960

// True when [offset, offset + length) lies inside a buffer of `size` bytes, without overflowing.
bool fits(std::size_t size, std::uint64_t offset, std::uint64_t length) {
  return offset <= size && length <= size - offset;
}

// VFIO structures are written by the kernel in host byte order and may sit unaligned in the caller's
// buffer, hence memcpy. Callers check bounds first.
template <typename T>
  requires std::is_trivially_copyable_v<T>
T load_native(std::span<const std::byte> bytes, std::size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// PCI configuration space is little-endian whatever the host is. Callers check bounds first.
// Malformed input: no syscall failed, so no errno (the caller names the
// ioctl or file it came from).
std::unexpected<Error> bad_info(std::string what) {
  return std::unexpected(make_error(0, "VFIO info capability chain", std::move(what)));
}
std::unexpected<Error> bad_config(std::string what) {
  return std::unexpected(make_error(0, "PCI capability list", std::move(what)));
}

std::uint32_t load_le(std::span<const std::byte> bytes, std::size_t offset, std::size_t width) {
  std::uint32_t value = 0;
  for (std::size_t index = 0; index < width; ++index)
    value |= std::to_integer<std::uint32_t>(bytes[offset + index]) << (8 * index);
  return value;
}

Result<void> check_decoder_input(const InfoCapability& cap, std::uint16_t expected_id,
                                                     std::string_view what, std::size_t fixed_size) {
  if (cap.id != expected_id)
    return bad_info(fmt::format("capability at offset {:#x} has id {}, not the {} capability id {}",
                                       cap.offset, cap.id, what, expected_id));
  if (cap.bytes.size() < fixed_size)
    return bad_info(
        fmt::format("{} capability at offset {:#x} has {} bytes, fewer than the {} it needs", what,
                    cap.offset, cap.bytes.size(), fixed_size));
  return {};
}

// Checks that `count` entries of `entry_size` bytes after the fixed part are all present.
Result<void> check_array_fits(const InfoCapability& cap, std::string_view what,
                                                  std::size_t fixed_size, std::uint32_t count,
                                                  std::size_t entry_size) {
  const std::uint64_t needed = fixed_size + std::uint64_t{count} * entry_size;
  if (needed > cap.bytes.size())
    return bad_info(
        fmt::format("{} capability at offset {:#x} declares {} entries ({} bytes) but has only "
                    "{} bytes",
                    what, cap.offset, count, needed, cap.bytes.size()));
  return {};
}

}  // namespace

Result<std::vector<InfoCapability>>
parse_info_capabilities(std::span<const std::byte> buffer, std::uint32_t first_offset) {
  constexpr std::size_t header_size = sizeof(vfio_info_cap_header);
  std::vector<InfoCapability> caps;
  std::uint32_t offset = first_offset;
  while (offset != 0) {
    if (caps.size() == max_info_capabilities)
      return bad_info(
          fmt::format("more than {} capabilities in the chain (the next is at offset {:#x})",
                      max_info_capabilities, offset));
    if (!fits(buffer.size(), offset, header_size))
      return bad_info(fmt::format(
          "capability header at offset {:#x} does not fit in the {}-byte buffer", offset, buffer.size()));
    InfoCapability cap;
    cap.offset = offset;
    cap.id = load_native<std::uint16_t>(buffer, offset + offsetof(vfio_info_cap_header, id));
    cap.version = load_native<std::uint16_t>(buffer, offset + offsetof(vfio_info_cap_header, version));
    const auto next = load_native<std::uint32_t>(buffer, offset + offsetof(vfio_info_cap_header, next));
    // Requiring every next header to start past the current one rules out loops and overlapping headers, and
    // makes the caps' extents ([offset, next offset)) well defined.
    if (next != 0 && std::uint64_t{next} < std::uint64_t{offset} + header_size)
      return bad_info(
          fmt::format("capability at offset {:#x} has next offset {:#x}, which does not move "
                      "forward past its header",
                      offset, next));
    caps.push_back(cap);
    offset = next;
  }
  // Each cap extends to the next one's header; the last one to the end of the buffer.
  for (std::size_t index = 0; index < caps.size(); ++index) {
    const std::size_t end = index + 1 < caps.size() ? caps[index + 1].offset : buffer.size();
    caps[index].bytes = buffer.subspan(caps[index].offset, end - caps[index].offset);
  }
  return caps;
}

const InfoCapability* find_info_capability(const std::vector<InfoCapability>& caps, std::uint16_t id) {
  for (const auto& cap : caps)
    if (cap.id == id) return &cap;
  return nullptr;
}

Result<std::vector<SparseMmapArea>> decode_sparse_mmap(const InfoCapability& cap) {
  using Cap = vfio_region_info_cap_sparse_mmap;
  using Area = vfio_region_sparse_mmap_area;
  constexpr std::string_view what = "sparse mmap";
  VFIOLAB_TRY(check_decoder_input(cap, VFIO_REGION_INFO_CAP_SPARSE_MMAP, what, sizeof(Cap)));
  const auto count = load_native<std::uint32_t>(cap.bytes, offsetof(Cap, nr_areas));
  VFIOLAB_TRY(check_array_fits(cap, what, sizeof(Cap), count, sizeof(Area)));
  std::vector<SparseMmapArea> areas;
  areas.reserve(count);
  for (std::uint32_t index = 0; index < count; ++index) {
    const std::size_t base = sizeof(Cap) + std::size_t{index} * sizeof(Area);
    areas.push_back({.offset = load_native<std::uint64_t>(cap.bytes, base + offsetof(Area, offset)),
                     .size = load_native<std::uint64_t>(cap.bytes, base + offsetof(Area, size))});
  }
  return areas;
}

Result<RegionType> decode_region_type(const InfoCapability& cap) {
  using Cap = vfio_region_info_cap_type;
  VFIOLAB_TRY(check_decoder_input(cap, VFIO_REGION_INFO_CAP_TYPE, "region type", sizeof(Cap)));
  return RegionType{.type = load_native<std::uint32_t>(cap.bytes, offsetof(Cap, type)),
                    .subtype = load_native<std::uint32_t>(cap.bytes, offsetof(Cap, subtype))};
}

Result<std::vector<IovaSpan>> decode_iova_ranges(const InfoCapability& cap) {
  using Cap = vfio_iommu_type1_info_cap_iova_range;
  using Range = vfio_iova_range;
  constexpr std::string_view what = "IOVA range";
  VFIOLAB_TRY(check_decoder_input(cap, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, what, sizeof(Cap)));
  const auto count = load_native<std::uint32_t>(cap.bytes, offsetof(Cap, nr_iovas));
  VFIOLAB_TRY(check_array_fits(cap, what, sizeof(Cap), count, sizeof(Range)));
  std::vector<IovaSpan> spans;
  spans.reserve(count);
  for (std::uint32_t index = 0; index < count; ++index) {
    const std::size_t base = sizeof(Cap) + std::size_t{index} * sizeof(Range);
    const IovaSpan span{.start = load_native<std::uint64_t>(cap.bytes, base + offsetof(Range, start)),
                        .last = load_native<std::uint64_t>(cap.bytes, base + offsetof(Range, end))};
    // An inverted range would make later size computations wrap around.
    if (span.start > span.last)
      return bad_info(
          fmt::format("IOVA range capability at offset {:#x}: range {} starts at {:#x}, "
                      "after its last address {:#x}",
                      cap.offset, index, span.start, span.last));
    spans.push_back(span);
  }
  return spans;
}

Result<std::uint32_t> decode_dma_avail(const InfoCapability& cap) {
  using Cap = vfio_iommu_type1_info_dma_avail;
  VFIOLAB_TRY(check_decoder_input(cap, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, "DMA available", sizeof(Cap)));
  return load_native<std::uint32_t>(cap.bytes, offsetof(Cap, avail));
}

namespace {

Result<void> check_config_size(std::span<const std::byte> config) {
  if (config.size() < pci_min_config_size)
    return bad_config(
        fmt::format("config space copy has {} bytes, fewer than the {}-byte standard header", config.size(),
                    pci_min_config_size));
  return {};
}

}  // namespace

Result<std::vector<PciCapability>> walk_pci_capabilities(
    std::span<const std::byte> config) {
  VFIOLAB_TRY(check_config_size(config));
  std::vector<PciCapability> caps;
  if ((load_le(config, pci_status_offset, 2) & pci_status_cap_list) == 0) return caps;

  std::bitset<pci_config_size> seen;
  std::size_t pointer_location = pci_cap_pointer_offset;  // where the pointer being followed was read
  std::size_t offset = std::to_integer<std::uint8_t>(config[pointer_location]) & pci_cap_pointer_mask;
  while (offset != 0) {
    if (offset < pci_first_cap_offset)
      return bad_config(
          fmt::format("capability pointer {:#x} read at offset {:#x} points into the "
                      "standard header (below {:#x})",
                      offset, pointer_location, pci_first_cap_offset));
    // Need the ID byte and the next pointer byte.
    if (!fits(config.size(), offset, 2))
      return bad_config(
          fmt::format("capability pointer {:#x} read at offset {:#x} is past the end of the "
                      "{}-byte config space copy",
                      offset, pointer_location, config.size()));
    if (seen.test(offset))
      return bad_config(
          fmt::format("capability list loops: offset {:#x} (pointed to from {:#x}) was "
                      "already visited",
                      offset, pointer_location));
    if (caps.size() == pci_max_capabilities)
      return bad_config(
          fmt::format("more than {} capabilities in the standard list (the next is at offset "
                      "{:#x})",
                      pci_max_capabilities, offset));
    seen.set(offset);
    caps.push_back(
        {.id = std::to_integer<std::uint8_t>(config[offset]), .offset = static_cast<std::uint16_t>(offset)});
    pointer_location = offset + 1;
    offset = std::to_integer<std::uint8_t>(config[pointer_location]) & pci_cap_pointer_mask;
  }
  return caps;
}

Result<std::vector<PciCapability>> walk_pci_ext_capabilities(
    std::span<const std::byte> config) {
  VFIOLAB_TRY(check_config_size(config));
  std::vector<PciCapability> caps;
  // Conventional PCI functions (and copies read without extended config access) stop at 256 bytes.
  if (config.size() < pci_ext_config_size) return caps;
  // 0 is "no extended capabilities"; all ones is what reads return when the space is not accessible.
  const std::uint32_t first_header = load_le(config, pci_config_size, 4);
  if (first_header == 0 || first_header == 0xffffffff) return caps;

  std::bitset<pci_ext_config_size / 4> seen;
  std::size_t offset = pci_config_size;
  while (true) {
    if (seen.test(offset / 4))
      return bad_config(
          fmt::format("extended capability list loops: offset {:#x} was already visited", offset));
    if (caps.size() == pci_max_ext_capabilities)
      return bad_config(fmt::format("more than {} extended capabilities (the next is at offset {:#x})",
                                         pci_max_ext_capabilities, offset));
    seen.set(offset / 4);
    // offset is 4-byte aligned and below 0x1000 (12-bit next field), so the header fits in 4096 bytes.
    const std::uint32_t header = load_le(config, offset, 4);
    caps.push_back({.id = static_cast<std::uint16_t>(header & 0xffff),
                    .offset = static_cast<std::uint16_t>(offset),
                    .version = static_cast<std::uint8_t>((header >> 16) & 0xf)});
    const std::size_t next = header >> 20;
    if (next == 0) break;
    if (next < pci_config_size)
      return bad_config(
          fmt::format("extended capability at offset {:#x} has next offset {:#x}, below "
                      "{:#x}",
                      offset, next, pci_config_size));
    if (next % 4 != 0)
      return bad_config(
          fmt::format("extended capability at offset {:#x} has next offset {:#x}, which is "
                      "not 4-byte aligned",
                      offset, next));
    offset = next;
  }
  return caps;
}

}  // namespace vfiolab
