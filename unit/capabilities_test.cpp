#include "check.h"
#include "vfiolab/capabilities.h"

#include <gtest/gtest.h>
#include <linux/vfio.h>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <tuple>
#include <vector>

namespace vfiolab {
namespace {

// A byte buffer built by hand: values are placed little-endian at explicit offsets. The VFIO structures
// are host-endian, so the info capability tests assume a little-endian host (as every VFIO test machine
// here is). Out-of-range writes throw (vector::at) instead of corrupting memory.
class ByteBuffer {
 public:
  explicit ByteBuffer(std::size_t size) : bytes_(size) {}

  template <std::unsigned_integral T>
  void put(std::size_t offset, T value) {
    for (std::size_t index = 0; index < sizeof(T); ++index)
      bytes_.at(offset + index) = static_cast<std::byte>((value >> (8 * index)) & 0xff);
  }

  void put_info_header(std::size_t offset, std::uint16_t id, std::uint16_t version, std::uint32_t next) {
    put<std::uint16_t>(offset, id);
    put<std::uint16_t>(offset + 2, version);
    put<std::uint32_t>(offset + 4, next);
  }

  std::span<const std::byte> view() const { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

// A vfio_region_info as the kernel returns it for a BAR with a hole for the MSI-X table: the fixed struct,
// then sparse mmap (2 areas), region type and MSI-X mappable caps, each padded to 8 bytes.
constexpr std::uint32_t sparse_offset = sizeof(vfio_region_info);                       // 0x20
constexpr std::uint32_t type_offset = sparse_offset + 16 + 2 * 16;                      // 0x50
constexpr std::uint32_t msix_offset = type_offset + sizeof(vfio_region_info_cap_type);  // 0x60
constexpr std::uint32_t region_info_size = msix_offset + sizeof(vfio_info_cap_header);  // 0x68

ByteBuffer make_region_info() {
  ByteBuffer buffer(region_info_size);
  buffer.put<std::uint32_t>(offsetof(vfio_region_info, argsz), region_info_size);
  buffer.put<std::uint32_t>(offsetof(vfio_region_info, flags), VFIO_REGION_INFO_FLAG_CAPS);
  buffer.put<std::uint32_t>(offsetof(vfio_region_info, cap_offset), sparse_offset);

  buffer.put_info_header(sparse_offset, VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, type_offset);
  buffer.put<std::uint32_t>(sparse_offset + 8, 2);  // nr_areas
  buffer.put<std::uint64_t>(sparse_offset + 16, 0x0);
  buffer.put<std::uint64_t>(sparse_offset + 24, 0x2000);
  buffer.put<std::uint64_t>(sparse_offset + 32, 0x3000);
  buffer.put<std::uint64_t>(sparse_offset + 40, 0xd000);

  buffer.put_info_header(type_offset, VFIO_REGION_INFO_CAP_TYPE, 1, msix_offset);
  buffer.put<std::uint32_t>(type_offset + 8, VFIO_REGION_TYPE_PCI_VENDOR_TYPE | 0x8086);
  buffer.put<std::uint32_t>(type_offset + 12, 3);

  buffer.put_info_header(msix_offset, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, 0);
  return buffer;
}

// A vfio_iommu_type1_info with an IOVA range cap (2 ranges, the second reaching the top of the address
// space) and a DMA available cap.
constexpr std::uint32_t iova_offset = sizeof(vfio_iommu_type1_info);   // 0x18
constexpr std::uint32_t dma_avail_offset = iova_offset + 16 + 2 * 16;  // 0x48
constexpr std::uint32_t type1_info_size = dma_avail_offset + 16;       // the 12-byte cap padded to 8

ByteBuffer make_type1_info() {
  ByteBuffer buffer(type1_info_size);
  buffer.put<std::uint32_t>(offsetof(vfio_iommu_type1_info, argsz), type1_info_size);
  buffer.put<std::uint32_t>(offsetof(vfio_iommu_type1_info, flags), VFIO_IOMMU_INFO_CAPS);
  buffer.put<std::uint32_t>(offsetof(vfio_iommu_type1_info, cap_offset), iova_offset);

  buffer.put_info_header(iova_offset, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, dma_avail_offset);
  buffer.put<std::uint32_t>(iova_offset + 8, 2);  // nr_iovas
  buffer.put<std::uint64_t>(iova_offset + 16, 0x0);
  buffer.put<std::uint64_t>(iova_offset + 24, 0xfedfffff);
  buffer.put<std::uint64_t>(iova_offset + 32, 0xfef00000);
  buffer.put<std::uint64_t>(iova_offset + 40, std::numeric_limits<std::uint64_t>::max());

  buffer.put_info_header(dma_avail_offset, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 0);
  buffer.put<std::uint32_t>(dma_avail_offset + 8, 65535);
  return buffer;
}

TEST(InfoCapabilities, RegionInfoChain) {
  const auto buffer = make_region_info();
  const auto caps = check(parse_info_capabilities(buffer.view(), sparse_offset));
  ASSERT_EQ(caps.size(), 3u);

  EXPECT_EQ(caps[0].id, VFIO_REGION_INFO_CAP_SPARSE_MMAP);
  EXPECT_EQ(caps[0].version, 1);
  EXPECT_EQ(caps[0].offset, sparse_offset);
  EXPECT_EQ(caps[0].bytes.size(), type_offset - sparse_offset);
  EXPECT_EQ(caps[0].bytes.data(), buffer.view().data() + sparse_offset);

  EXPECT_EQ(caps[1].id, VFIO_REGION_INFO_CAP_TYPE);
  EXPECT_EQ(caps[1].offset, type_offset);
  EXPECT_EQ(caps[1].bytes.size(), msix_offset - type_offset);

  // The last cap runs to the end of the buffer.
  EXPECT_EQ(caps[2].id, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE);
  EXPECT_EQ(caps[2].offset, msix_offset);
  EXPECT_EQ(caps[2].bytes.size(), region_info_size - msix_offset);
}

TEST(InfoCapabilities, FindCapability) {
  const auto buffer = make_region_info();
  const auto caps = check(parse_info_capabilities(buffer.view(), sparse_offset));
  const InfoCapability* type = find_info_capability(caps, VFIO_REGION_INFO_CAP_TYPE);
  ASSERT_NE(type, nullptr);
  EXPECT_EQ(type->offset, type_offset);
  EXPECT_EQ(find_info_capability(caps, 0x7777), nullptr);
  EXPECT_EQ(find_info_capability({}, VFIO_REGION_INFO_CAP_TYPE), nullptr);
}

TEST(InfoCapabilities, SparseMmapAreas) {
  const auto buffer = make_region_info();
  const auto caps = check(parse_info_capabilities(buffer.view(), sparse_offset));
  const auto areas = check(decode_sparse_mmap(caps[0]));
  ASSERT_EQ(areas.size(), 2u);
  EXPECT_EQ(areas[0].offset, 0x0u);
  EXPECT_EQ(areas[0].size, 0x2000u);
  EXPECT_EQ(areas[1].offset, 0x3000u);
  EXPECT_EQ(areas[1].size, 0xd000u);
}

TEST(InfoCapabilities, RegionType) {
  const auto buffer = make_region_info();
  const auto caps = check(parse_info_capabilities(buffer.view(), sparse_offset));
  const auto type = check(decode_region_type(caps[1]));
  EXPECT_EQ(type.type, VFIO_REGION_TYPE_PCI_VENDOR_TYPE | 0x8086);
  EXPECT_EQ(type.subtype, 3u);
}

TEST(InfoCapabilities, UnalignedBuffer) {
  // The same chain one byte into a larger allocation: every field read is misaligned.
  const auto original = make_region_info();
  ByteBuffer shifted(region_info_size + 1);
  for (std::size_t index = 0; index < region_info_size; ++index)
    shifted.put(index + 1, std::to_integer<std::uint8_t>(original.view()[index]));
  const auto caps = check(parse_info_capabilities(shifted.view().subspan(1), sparse_offset));
  ASSERT_EQ(caps.size(), 3u);
  const auto areas = check(decode_sparse_mmap(caps[0]));
  ASSERT_EQ(areas.size(), 2u);
  EXPECT_EQ(areas[1].size, 0xd000u);
}

TEST(InfoCapabilities, IovaRangesAndDmaAvail) {
  const auto buffer = make_type1_info();
  const auto caps = check(parse_info_capabilities(buffer.view(), iova_offset));
  ASSERT_EQ(caps.size(), 2u);

  const InfoCapability* iova = find_info_capability(caps, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  ASSERT_NE(iova, nullptr);
  const auto ranges = check(decode_iova_ranges(*iova));
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].start, 0x0u);
  EXPECT_EQ(ranges[0].last, 0xfedfffffu);
  EXPECT_EQ(ranges[1].start, 0xfef00000u);
  EXPECT_EQ(ranges[1].last, std::numeric_limits<std::uint64_t>::max());

  const InfoCapability* dma_avail = find_info_capability(caps, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  ASSERT_NE(dma_avail, nullptr);
  const auto avail = check(decode_dma_avail(*dma_avail));
  EXPECT_EQ(avail, 65535u);
}

TEST(InfoCapabilities, EmptyChain) {
  const auto buffer = make_region_info();
  const auto caps = check(parse_info_capabilities(buffer.view(), 0));
  EXPECT_TRUE(caps.empty());

  const auto from_nothing = check(parse_info_capabilities({}, 0));
  EXPECT_TRUE(from_nothing.empty());
}

TEST(InfoCapabilities, HeaderPastEnd) {
  ByteBuffer buffer(0x40);
  // First header starts 4 bytes before the end: only half of it is present.
  const auto partial = parse_info_capabilities(buffer.view(), 0x3c);
  ASSERT_FALSE(partial);
  EXPECT_NE(partial.error().message().find("0x3c"), std::string::npos) << partial.error();

  // First header well past the end; a huge offset must not wrap around.
  EXPECT_FALSE(parse_info_capabilities(buffer.view(), 0x1000));
  EXPECT_FALSE(parse_info_capabilities(buffer.view(), 0xfffffffc));

  // A valid header whose next points past the end.
  buffer.put_info_header(0x20, 1, 1, 0x100);
  const auto next_past_end = parse_info_capabilities(buffer.view(), 0x20);
  ASSERT_FALSE(next_past_end);
  EXPECT_NE(next_past_end.error().message().find("0x100"), std::string::npos) << next_past_end.error();
}

TEST(InfoCapabilities, NextPointingBackwards) {
  ByteBuffer buffer(0x40);
  buffer.put_info_header(0x10, 1, 1, 0x20);
  buffer.put_info_header(0x20, 2, 1, 0x10);
  const auto caps = parse_info_capabilities(buffer.view(), 0x10);
  ASSERT_FALSE(caps);
  EXPECT_NE(caps.error().message().find("0x20"), std::string::npos) << caps.error();
}

TEST(InfoCapabilities, NextPointingToItself) {
  ByteBuffer buffer(0x40);
  buffer.put_info_header(0x10, 1, 1, 0x10);
  const auto caps = parse_info_capabilities(buffer.view(), 0x10);
  ASSERT_FALSE(caps);
  EXPECT_NE(caps.error().message().find("0x10"), std::string::npos) << caps.error();
}

TEST(InfoCapabilities, NextInsideOwnHeader) {
  // Moving forward by less than a header would overlap the two headers.
  ByteBuffer buffer(0x40);
  buffer.put_info_header(0x10, 1, 1, 0x14);
  EXPECT_FALSE(parse_info_capabilities(buffer.view(), 0x10));
}

TEST(InfoCapabilities, TruncatedSparseMmap) {
  // nr_areas says 4 (16 + 64 bytes) but the cap has room for only 2.
  ByteBuffer buffer(0x10 + 16 + 2 * 16);
  buffer.put_info_header(0x10, VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, 0);
  buffer.put<std::uint32_t>(0x10 + 8, 4);
  const auto caps = check(parse_info_capabilities(buffer.view(), 0x10));
  ASSERT_EQ(caps.size(), 1u);
  const auto areas = decode_sparse_mmap(caps[0]);
  ASSERT_FALSE(areas);
  EXPECT_NE(areas.error().message().find("0x10"), std::string::npos) << areas.error();

  // A count large enough to overflow a 32-bit size computation is still caught.
  buffer.put<std::uint32_t>(0x10 + 8, 0xffffffff);
  EXPECT_FALSE(decode_sparse_mmap(check(parse_info_capabilities(buffer.view(), 0x10))[0]));
}

TEST(InfoCapabilities, TruncatedFixedParts) {
  // Each cap is a bare header at the end of the buffer, shorter than its fixed struct.
  const auto bare_cap = [](std::uint16_t id) {
    ByteBuffer buffer(0x18);
    buffer.put_info_header(0x10, id, 1, 0);
    return buffer;
  };
  const auto sparse = bare_cap(VFIO_REGION_INFO_CAP_SPARSE_MMAP);
  EXPECT_FALSE(decode_sparse_mmap(check(parse_info_capabilities(sparse.view(), 0x10))[0]));
  const auto type = bare_cap(VFIO_REGION_INFO_CAP_TYPE);
  EXPECT_FALSE(decode_region_type(check(parse_info_capabilities(type.view(), 0x10))[0]));
  const auto iova = bare_cap(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  EXPECT_FALSE(decode_iova_ranges(check(parse_info_capabilities(iova.view(), 0x10))[0]));
  const auto dma_avail = bare_cap(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  EXPECT_FALSE(decode_dma_avail(check(parse_info_capabilities(dma_avail.view(), 0x10))[0]));

  // The 12-byte DMA available cap needs no padding to decode.
  ByteBuffer exact(0x10 + sizeof(vfio_iommu_type1_info_dma_avail));
  exact.put_info_header(0x10, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 0);
  exact.put<std::uint32_t>(0x18, 7);
  const auto avail = check(decode_dma_avail(check(parse_info_capabilities(exact.view(), 0x10))[0]));
  EXPECT_EQ(avail, 7u);
}

TEST(InfoCapabilities, TruncatedIovaRanges) {
  ByteBuffer buffer(0x10 + 16 + 16);
  buffer.put_info_header(0x10, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 0);
  buffer.put<std::uint32_t>(0x18, 2);
  EXPECT_FALSE(decode_iova_ranges(check(parse_info_capabilities(buffer.view(), 0x10))[0]));
}

TEST(InfoCapabilities, InvertedIovaRange) {
  ByteBuffer buffer(0x10 + 16 + 16);
  buffer.put_info_header(0x10, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 0);
  buffer.put<std::uint32_t>(0x18, 1);
  buffer.put<std::uint64_t>(0x20, 0x2000);
  buffer.put<std::uint64_t>(0x28, 0x1000);
  EXPECT_FALSE(decode_iova_ranges(check(parse_info_capabilities(buffer.view(), 0x10))[0]));
}

TEST(InfoCapabilities, DecoderRejectsOtherIds) {
  const auto buffer = make_region_info();
  const auto caps = check(parse_info_capabilities(buffer.view(), sparse_offset));
  EXPECT_FALSE(decode_region_type(caps[0]));
  EXPECT_FALSE(decode_sparse_mmap(caps[1]));
  EXPECT_FALSE(decode_dma_avail(caps[2]));
}

ByteBuffer make_chain_of_headers(std::size_t count) {
  ByteBuffer buffer(count * sizeof(vfio_info_cap_header) + 8);
  for (std::size_t index = 0; index < count; ++index) {
    const std::size_t offset = 8 + index * sizeof(vfio_info_cap_header);
    const std::size_t next = index + 1 < count ? offset + sizeof(vfio_info_cap_header) : 0;
    buffer.put_info_header(offset, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, static_cast<std::uint32_t>(next));
  }
  return buffer;
}

TEST(InfoCapabilities, SixtyFourCapsAccepted) {
  const auto buffer = make_chain_of_headers(64);
  const auto caps = check(parse_info_capabilities(buffer.view(), 8));
  EXPECT_EQ(caps.size(), 64u);
}

TEST(InfoCapabilities, SixtyFiveCapsRejected) {
  const auto buffer = make_chain_of_headers(65);
  const auto caps = parse_info_capabilities(buffer.view(), 8);
  ASSERT_FALSE(caps);
  EXPECT_NE(caps.error().message().find("64"), std::string::npos) << caps.error();
}

// PCI configuration space: a type 0 header with the Capabilities List status bit and a pointer at 0x34.
ByteBuffer make_config(std::size_t size, std::uint8_t first_pointer) {
  ByteBuffer config(size);
  config.put<std::uint16_t>(0x00, 0x8086);  // vendor ID
  config.put<std::uint16_t>(0x02, 0x1234);  // device ID
  config.put<std::uint16_t>(0x06, 0x0010);  // status: capabilities list
  config.put<std::uint8_t>(0x34, first_pointer);
  return config;
}

void put_pci_cap(ByteBuffer& config, std::uint8_t offset, std::uint8_t id, std::uint8_t next) {
  config.put<std::uint8_t>(offset, id);
  config.put<std::uint8_t>(offset + 1, next);
}

// A walk's capabilities as (ID, offset, version) triples, to compare with a list whole.
using CapabilityFields = std::vector<std::tuple<unsigned, unsigned, unsigned>>;
CapabilityFields fields(const std::vector<PciCapability>& caps) {
  CapabilityFields out;
  for (const PciCapability& cap : caps) out.emplace_back(cap.id, cap.offset, cap.version);
  return out;
}

std::uint32_t ext_header(std::uint16_t id, std::uint8_t version, std::uint32_t next) {
  return id | (std::uint32_t{version} << 16) | (next << 20);
}

TEST(PciCapabilities, StandardList) {
  auto config = make_config(256, 0x40);
  put_pci_cap(config, 0x40, 0x01, 0x50);  // power management
  put_pci_cap(config, 0x50, 0x05, 0x70);  // MSI
  put_pci_cap(config, 0x70, 0x10, 0x00);  // PCI Express
  EXPECT_EQ(fields(check(walk_pci_capabilities(config.view()))),
            (CapabilityFields{{0x01, 0x40, 0}, {0x05, 0x50, 0}, {0x10, 0x70, 0}}));
}

TEST(PciCapabilities, StatusBitClearMeansNoList) {
  auto config = make_config(256, 0x40);
  put_pci_cap(config, 0x40, 0x01, 0x00);
  config.put<std::uint16_t>(0x06, 0x0000);
  const auto caps = check(walk_pci_capabilities(config.view()));
  EXPECT_TRUE(caps.empty());
}

TEST(PciCapabilities, ZeroPointerMeansNoList) {
  const auto config = make_config(256, 0x00);
  const auto caps = check(walk_pci_capabilities(config.view()));
  EXPECT_TRUE(caps.empty());
}

TEST(PciCapabilities, SelfLoop) {
  auto config = make_config(256, 0x40);
  put_pci_cap(config, 0x40, 0x01, 0x50);
  put_pci_cap(config, 0x50, 0x05, 0x50);
  const auto caps = walk_pci_capabilities(config.view());
  ASSERT_FALSE(caps);
  EXPECT_NE(caps.error().message().find("0x50"), std::string::npos) << caps.error();
}

TEST(PciCapabilities, LoopBackToStart) {
  auto config = make_config(256, 0x40);
  put_pci_cap(config, 0x40, 0x01, 0x50);
  put_pci_cap(config, 0x50, 0x05, 0x40);
  EXPECT_FALSE(walk_pci_capabilities(config.view()));
}

TEST(PciCapabilities, PointerIntoStandardHeader) {
  auto first = make_config(256, 0x30);
  const auto from_header = walk_pci_capabilities(first.view());
  ASSERT_FALSE(from_header);
  EXPECT_NE(from_header.error().message().find("0x30"), std::string::npos) << from_header.error();

  auto later = make_config(256, 0x40);
  put_pci_cap(later, 0x40, 0x01, 0x3c);
  const auto from_cap = walk_pci_capabilities(later.view());
  ASSERT_FALSE(from_cap);
  EXPECT_NE(from_cap.error().message().find("0x3c"), std::string::npos) << from_cap.error();
}

TEST(PciCapabilities, LowPointerBitsIgnored) {
  auto config = make_config(256, 0x43);   // 0x40
  put_pci_cap(config, 0x40, 0x01, 0x52);  // 0x50
  put_pci_cap(config, 0x50, 0x05, 0x03);  // 0x00: end of list
  const auto caps = check(walk_pci_capabilities(config.view()));
  ASSERT_EQ(caps.size(), 2u);
  EXPECT_EQ(caps[0].offset, 0x40);
  EXPECT_EQ(caps[1].offset, 0x50);
  EXPECT_EQ(caps[1].id, 0x05);
}

TEST(PciCapabilities, PointerPastShortBuffer) {
  // A 64-byte copy holds only the header, so a pointer to 0x40 cannot be followed.
  const auto config = make_config(64, 0x40);
  const auto caps = walk_pci_capabilities(config.view());
  ASSERT_FALSE(caps);
  EXPECT_NE(caps.error().message().find("0x40"), std::string::npos) << caps.error();
}

TEST(PciCapabilities, LastPossibleSlot) {
  auto config = make_config(256, 0xfc);
  put_pci_cap(config, 0xfc, 0x09, 0x00);  // vendor specific
  const auto caps = check(walk_pci_capabilities(config.view()));
  ASSERT_EQ(caps.size(), 1u);
  EXPECT_EQ(caps[0].offset, 0xfc);
}

TEST(PciCapabilities, ExtendedList) {
  auto config = make_config(4096, 0x00);
  config.put<std::uint32_t>(0x100, ext_header(0x0001, 2, 0x148));  // AER
  config.put<std::uint32_t>(0x148, ext_header(0x000d, 1, 0));      // ACS
  EXPECT_EQ(fields(check(walk_pci_ext_capabilities(config.view()))),
            (CapabilityFields{{0x0001, 0x100, 2}, {0x000d, 0x148, 1}}));
}

TEST(PciCapabilities, ExtendedAllOnesOrZeroMeansNone) {
  auto config = make_config(4096, 0x00);
  config.put<std::uint32_t>(0x100, 0xffffffff);
  const auto all_ones = check(walk_pci_ext_capabilities(config.view()));
  EXPECT_TRUE(all_ones.empty());

  config.put<std::uint32_t>(0x100, 0);
  const auto zero = check(walk_pci_ext_capabilities(config.view()));
  EXPECT_TRUE(zero.empty());
}

TEST(PciCapabilities, ConventionalConfigHasNoExtended) {
  const auto config = make_config(256, 0x00);
  const auto caps = check(walk_pci_ext_capabilities(config.view()));
  EXPECT_TRUE(caps.empty());
}

TEST(PciCapabilities, ExtendedLoop) {
  auto self = make_config(4096, 0x00);
  self.put<std::uint32_t>(0x100, ext_header(0x0001, 2, 0x100));
  const auto self_loop = walk_pci_ext_capabilities(self.view());
  ASSERT_FALSE(self_loop);
  EXPECT_NE(self_loop.error().message().find("0x100"), std::string::npos) << self_loop.error();

  auto back = make_config(4096, 0x00);
  back.put<std::uint32_t>(0x100, ext_header(0x0001, 2, 0x148));
  back.put<std::uint32_t>(0x148, ext_header(0x000d, 1, 0x100));
  EXPECT_FALSE(walk_pci_ext_capabilities(back.view()));
}

TEST(PciCapabilities, ExtendedMisalignedNext) {
  auto config = make_config(4096, 0x00);
  config.put<std::uint32_t>(0x100, ext_header(0x0001, 2, 0x14a));
  const auto caps = walk_pci_ext_capabilities(config.view());
  ASSERT_FALSE(caps);
  EXPECT_NE(caps.error().message().find("0x14a"), std::string::npos) << caps.error();
}

TEST(PciCapabilities, ExtendedNextIntoConventionalSpace) {
  auto config = make_config(4096, 0x00);
  config.put<std::uint32_t>(0x100, ext_header(0x0001, 2, 0x0fc));
  EXPECT_FALSE(walk_pci_ext_capabilities(config.view()));
}

TEST(PciCapabilities, BothListsInOneCopy) {
  auto config = make_config(4096, 0x40);
  put_pci_cap(config, 0x40, 0x10, 0x00);
  config.put<std::uint32_t>(0x100, ext_header(0x000b, 1, 0));  // vendor specific extended
  const auto standard = check(walk_pci_capabilities(config.view()));
  ASSERT_EQ(standard.size(), 1u);
  EXPECT_EQ(standard[0].id, 0x10);
  const auto extended = check(walk_pci_ext_capabilities(config.view()));
  ASSERT_EQ(extended.size(), 1u);
  EXPECT_EQ(extended[0].id, 0x000b);
}

TEST(PciCapabilities, ShortBufferRejected) {
  ByteBuffer config(32);
  const auto standard = walk_pci_capabilities(config.view());
  ASSERT_FALSE(standard);
  EXPECT_NE(standard.error().message().find("32"), std::string::npos) << standard.error();
  EXPECT_FALSE(walk_pci_ext_capabilities(config.view()));
}

}  // namespace
}  // namespace vfiolab
