#include "vfiolab/error.h"
#include "vfiolab/iommu.h"
#include "vfiolab/memory.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace vfiolab {
namespace {

TEST(Error, MessageNamesOperationContextAndErrno) {
  Error error = make_error(EINVAL, "VFIO_IOMMU_MAP_DMA", "mode vfio_type1_iommu iova 0x1000 size 0x0");
  EXPECT_EQ(error.message(),
            "VFIO_IOMMU_MAP_DMA (mode vfio_type1_iommu iova 0x1000 size 0x0): Invalid argument (EINVAL)");
  EXPECT_EQ(make_error(0, "PciDevice::open", "no PCI device 0000:00:1e.7").message(),
            "PciDevice::open: no PCI device 0000:00:1e.7");
}

TEST(Error, CheckThrowsWithTheErrorKept) {
  Result<int> bad = std::unexpected(make_error(EBUSY, "open /dev/vfio/3"));
  try {
    check(std::move(bad));
    FAIL() << "check did not throw";
  } catch (const VfioError& e) {
    EXPECT_EQ(e.error().errnum, EBUSY);
    EXPECT_NE(std::string(e.what()).find("EBUSY"), std::string::npos);
  }
  EXPECT_EQ(check(Result<int>(7)), 7);
  EXPECT_NO_THROW(check(Result<void>()));
}

TEST(IommuModes, FiveModesByNameWithIommufdTheDefault) {
  ASSERT_EQ(all_iommu_modes().size(), 5u);
  for (const auto& info : all_iommu_modes()) {
    auto mode = iommu_mode_from_name(info.name);
    ASSERT_TRUE(mode);
    EXPECT_EQ(*mode, info.mode);
  }
  EXPECT_EQ(iommu_mode_info(kDefaultIommuMode).name, "iommufd");
  auto unknown = iommu_mode_from_name("type2");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("unknown IOMMU mode 'type2'"), std::string::npos);
  EXPECT_NE(unknown.error().message().find("iommufd_compat_type1v2"), std::string::npos);
}

TEST(Backings, NamesAndPageSizes) {
  EXPECT_EQ(backing_info(Backing::anonymous_hugetlb_2mb).page_size, 2u << 20);
  EXPECT_EQ(backing_info(Backing::anonymous_hugetlb_1gb).page_size, 1u << 30);
  EXPECT_EQ(*backing_from_name("memfd"), Backing::memfd);
  EXPECT_FALSE(backing_from_name("hugetlb"));
}

TEST(Backings, AnonymousBufferIsUsableAndRounded) {
  auto buffer = DmaBuffer::allocate(Backing::anonymous, 100);
  ASSERT_TRUE(buffer) << buffer.error().message();
  EXPECT_EQ(buffer->size(), 4096u);
  buffer->bytes()[4095] = std::byte{1};
  EXPECT_FALSE(DmaBuffer::allocate(Backing::anonymous, 0));
}

}  // namespace
}  // namespace vfiolab
