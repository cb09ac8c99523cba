// Capability parsing from untrusted byte buffers: VFIO "info capability chains" (appended by the kernel
// after vfio_region_info, vfio_iommu_type1_info, ...) and PCI configuration-space capability lists.
// Pure parsing: no ioctls, every read bounds-checked, malformed input reported as text.
#pragma once

#include <cstddef>
#include <cstdint>
#include "vfiolab/error.h"

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vfiolab {

// One entry of a VFIO info capability chain. `bytes` points into the buffer given to
// parse_info_capabilities, so it is only valid while that buffer is.
struct InfoCapability {
  std::uint16_t id = 0;
  std::uint16_t version = 0;
  std::uint32_t offset = 0;          // of its header, from the buffer's start
  std::span<const std::byte> bytes;  // header included, up to the next cap (or buffer end)
};

// Walks the chain starting at first_offset (0 = no capabilities -> empty vector). Errors (text naming the
// offset): header not fully inside the buffer, a next offset that does not move forward (loops), more
// than 64 capabilities.
Result<std::vector<InfoCapability>>
parse_info_capabilities(std::span<const std::byte> buffer, std::uint32_t first_offset);

// The first capability with this id, or nullptr.
const InfoCapability* find_info_capability(const std::vector<InfoCapability>& caps, std::uint16_t id);

// Each decoder fails (text) when the capability is shorter than its declared contents, or when its id is
// not the one the decoder understands.
struct SparseMmapArea {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};
Result<std::vector<SparseMmapArea>> decode_sparse_mmap(const InfoCapability& cap);

struct RegionType {
  std::uint32_t type = 0;
  std::uint32_t subtype = 0;
};
Result<RegionType> decode_region_type(const InfoCapability& cap);

struct IovaSpan {
  std::uint64_t start = 0;
  std::uint64_t last = 0;  // inclusive, as the kernel gives it
};
// Also fails for a range whose start lies after its last address.
Result<std::vector<IovaSpan>> decode_iova_ranges(const InfoCapability& cap);

Result<std::uint32_t> decode_dma_avail(const InfoCapability& cap);

struct PciCapability {
  std::uint16_t id = 0;  // 8-bit IDs for standard caps, 16-bit for extended
  std::uint16_t offset = 0;
  std::uint8_t version = 0;  // extended only
};

// Errors (text naming the offset) for a loop (an offset seen twice), a pointer out of range, more than 48
// standard / 960 extended entries. A buffer shorter than 64 bytes is an error. A buffer without extended
// configuration space (shorter than 4096 bytes) has no extended capabilities.
Result<std::vector<PciCapability>>
walk_pci_capabilities(std::span<const std::byte> config);
Result<std::vector<PciCapability>>
walk_pci_ext_capabilities(std::span<const std::byte> config);

}  // namespace vfiolab
