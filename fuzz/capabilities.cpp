// Bytes from the kernel and the device: VFIO info capability chains
// (parse_info_capabilities and its decoders) and PCI capability lists
// (walk_pci_capabilities, walk_pci_ext_capabilities). The input's first
// four bytes are the chain's first offset, the rest its buffer; the whole
// input is also a copy of config space, grown to 4096 bytes (zeros after
// it) when it holds 256 or more, so that the extended list is walked.
#include "fuzz.h"
#include "vfiolab/capabilities.h"

#include <linux/vfio.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

namespace {

using namespace vfiolab;
using fuzz::require;

bool inside(std::span<const std::byte> part, std::span<const std::byte> whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

void info_chain(std::span<const std::byte> input) {
  if (input.size() < 4) return;
  std::uint32_t first = 0;
  std::memcpy(&first, input.data(), sizeof first);
  // A copy the size of the buffer alone, so that ASan sees a read past it.
  const std::vector<std::byte> buffer(input.begin() + 4, input.end());
  const auto caps = parse_info_capabilities(buffer, first);
  if (!caps) return;
  require(caps->size() <= 64, "a chain has at most 64 capabilities");
  std::uint64_t last_end = 0;
  for (const auto& cap : *caps) {
    require(cap.offset >= last_end, "capabilities move forward without overlapping");
    require(cap.bytes.size() >= sizeof(vfio_info_cap_header) && inside(cap.bytes, buffer),
            "a capability's header and bytes are inside the buffer");
    last_end = std::uint64_t{cap.offset} + cap.bytes.size();
    require(find_info_capability(*caps, cap.id) != nullptr, "a capability is found by its id");

    if (const auto areas = decode_sparse_mmap(cap)) {
      require(sizeof(vfio_region_info_cap_sparse_mmap) + areas->size() * sizeof(vfio_region_sparse_mmap_area) <=
                  cap.bytes.size(),
              "sparse mmap areas are inside the capability");
    }
    (void)decode_region_type(cap);
    if (const auto spans = decode_iova_ranges(cap)) {
      for (const auto& span : *spans) require(span.start <= span.last, "an IOVA range is not inverted");
    }
    (void)decode_dma_avail(cap);
  }
}

void config_space(std::span<const std::byte> input) {
  std::vector<std::byte> config(input.begin(), input.end());
  if (config.size() >= 256 && config.size() < 4096) config.resize(4096);

  if (const auto caps = walk_pci_capabilities(config)) {
    require(caps->size() <= 48, "at most 48 standard capabilities");
    std::set<std::uint16_t> offsets;
    for (const auto& cap : *caps) {
      require(cap.offset >= 0x40 && cap.offset + 2u <= config.size() && cap.id <= 0xff,
              "a standard capability lies past the header, inside the copy");
      require(offsets.insert(cap.offset).second, "no offset is visited twice");
    }
  }
  if (const auto caps = walk_pci_ext_capabilities(config)) {
    require(caps->size() <= 960, "at most 960 extended capabilities");
    require(caps->empty() || config.size() >= 4096, "only a 4096-byte copy has extended capabilities");
    std::set<std::uint16_t> offsets;
    for (const auto& cap : *caps) {
      require(cap.offset >= 0x100 && cap.offset % 4 == 0 && cap.offset + 4u <= config.size(),
              "an extended capability is aligned, inside extended space");
      require(cap.version <= 0xf, "a version is four bits");
      require(offsets.insert(cap.offset).second, "no offset is visited twice");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  info_chain(input);
  config_space(input);
  return 0;
}
