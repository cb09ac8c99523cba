// RegionTable: the IOVA behind a host address.
#include "vfiolab/region_table.h"

#include <gtest/gtest.h>

namespace vfiolab {
namespace {

void* at(std::uintptr_t address) { return reinterpret_cast<void*>(address); }

TEST(RegionTable, LooksUpInsideRegionsOnly) {
  RegionTable table;
  table.insert({at(0x10000), 0x800000, 0x2000});
  table.insert({at(0x20000), 0x900000, 0x1000});
  EXPECT_EQ(table.to_iova(at(0x10000)).value(), 0x800000u);
  EXPECT_EQ(table.to_iova(at(0x11fff)).value(), 0x801fffu);
  EXPECT_EQ(table.to_iova(at(0x20800)).value(), 0x900800u);
  for (std::uintptr_t outside : {0x0ul, 0xffffUL, 0x12000UL, 0x1ffffUL, 0x21000UL, UINTPTR_MAX}) {
    auto iova = table.to_iova(at(outside));
    ASSERT_FALSE(iova) << std::hex << outside;
    EXPECT_EQ(iova.error().errnum, ENOENT);
  }
}

TEST(RegionTable, EraseAndReplace) {
  RegionTable table;
  table.insert({at(0x10000), 0x800000, 0x1000});
  table.insert({at(0x10000), 0x700000, 0x4000});  // same start: replaced
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.to_iova(at(0x13000)).value(), 0x703000u);
  table.erase(at(0x10000));
  EXPECT_FALSE(table.to_iova(at(0x10000)));
  EXPECT_EQ(table.find(at(0x10000)), nullptr);
  table.insert({at(0x10000), 0x1000, 0x1000});
  table.clear();
  EXPECT_EQ(table.size(), 0u);
}

TEST(RegionTable, RegionAtTheTopOfTheAddressSpace) {
  RegionTable table;
  table.insert({at(UINTPTR_MAX - 0xfff), 0x5000, 0x1000});
  EXPECT_EQ(table.to_iova(at(UINTPTR_MAX)).value(), 0x5fffu);
}

TEST(RegionTable, ManyRegions) {
  RegionTable table;
  for (std::uintptr_t i = 0; i < 10000; ++i) table.insert({at(0x100000 + i * 0x2000), i * 0x1000, 0x1000});
  for (std::uintptr_t i = 0; i < 10000; i += 97) {
    EXPECT_EQ(table.to_iova(at(0x100000 + i * 0x2000 + 0x10)).value(), i * 0x1000 + 0x10);
    EXPECT_FALSE(table.to_iova(at(0x100000 + i * 0x2000 + 0x1000)));  // the hole after it
  }
}

// Iommu::unmap forgets the regions an unmap removed whole, and only those.
TEST(RegionTable, EraseWithinDropsOnlyWholeRegions) {
  alignas(4096) static std::byte memory[4 * 4096];
  RegionTable table;
  for (std::uint64_t i = 0; i < 4; ++i) table.insert({memory + i * 4096, 0x10000 + i * 0x1000, 0x1000});
  table.erase_within(0x11000, 0x2000);  // the middle two
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.to_iova(memory));
  EXPECT_FALSE(table.to_iova(memory + 4096));
  EXPECT_FALSE(table.to_iova(memory + 2 * 4096));
  table.erase_within(0x13000, 0x800);  // half of the last: it stays
  EXPECT_TRUE(table.to_iova(memory + 3 * 4096));
  table.erase_within(0, UINT64_MAX);  // iommufd's "everything": no end wraps at the top
  EXPECT_EQ(table.size(), 0u);
}

}  // namespace
}  // namespace vfiolab
