#include "check.h"
#include "vfiolab/error.h"
#include "vfiolab/iommu.h"
#include "vfiolab/memory.h"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

namespace vfiolab {
namespace {

TEST(Error, MessageNamesOperationContextAndErrno) {
  Error error = make_error(EINVAL, "VFIO_IOMMU_MAP_DMA", "mode vfio_type1_iommu iova 0x1000 size 0x0");
  EXPECT_EQ(error.message(),
            "VFIO_IOMMU_MAP_DMA (mode vfio_type1_iommu iova 0x1000 size 0x0): Invalid argument (EINVAL)");
  EXPECT_EQ(make_error(0, "PciDevice::open", "no PCI device 0000:00:1e.7").message(),
            "PciDevice::open: no PCI device 0000:00:1e.7");
}

TEST(Error, DeviceComesFirstInTheMessage) {
  const Error error = device_error(EIO, "0000:00:05.0", "pread config", "mode iommufd offset 0x4 size 2");
  EXPECT_EQ(error.device, "0000:00:05.0");
  EXPECT_EQ(error.message(), "pread config (0000:00:05.0 mode iommufd offset 0x4 size 2): Input/output error (EIO)");
  EXPECT_EQ(device_error(0, "0000:00:05.0", "VFIO_DEVICE_GET_INFO", "not a PCI device").message(),
            "VFIO_DEVICE_GET_INFO: 0000:00:05.0 not a PCI device");
  std::ostringstream out;
  out << error;
  EXPECT_EQ(out.str(), error.message());
}

TEST(Error, WrapKeepsTheCauseAndItsUnsupportedFlag) {
  const Error cause = unsupported_error(ENOTSUP, "VFIO_IOMMU_GET_INFO", "no IOVA range capability");
  const Error wrapped = wrap_error(cause, EPROTO, "IOVA ranges", "0000:00:04.0");
  EXPECT_TRUE(wrapped.unsupported);
  EXPECT_EQ(wrapped.errnum, EPROTO);
  EXPECT_NE(wrapped.message().find(cause.message()), std::string::npos) << wrapped.message();
}

// check() is the harness's: the one place an Error becomes an exception.
TEST(Error, CheckThrowsWithTheErrorKept) {
  Result<int> bad = std::unexpected(make_error(EBUSY, "open /dev/vfio/3"));
  try {
    check(std::move(bad));
    FAIL() << "check did not throw";
  } catch (const harness::CheckFailed& e) {
    EXPECT_EQ(e.error().errnum, EBUSY);
    EXPECT_NE(std::string(e.what()).find("EBUSY"), std::string::npos);
  }
  EXPECT_EQ(check(Result<int>(7)), 7);
  EXPECT_NO_THROW(check(Result<void>()));
}

TEST(IommuModes, FiveModesByNameWithIommufdTheDefault) {
  ASSERT_EQ(all_iommu_modes().size(), 5u);
  for (const auto& info : all_iommu_modes()) {
    EXPECT_EQ(check(iommu_mode_from_name(info.name)), info.mode);
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
  EXPECT_EQ(check(backing_from_name("memfd")), Backing::memfd);
  EXPECT_FALSE(backing_from_name("hugetlb"));
}

TEST(Backings, AnonymousBufferIsUsableAndRounded) {
  auto buffer = check(DmaBuffer::allocate(Backing::anonymous, 100));
  EXPECT_EQ(buffer.size(), 4096u);
  buffer.bytes()[4095] = std::byte{1};
  EXPECT_FALSE(DmaBuffer::allocate(Backing::anonymous, 0));
}

// Resident pages of a buffer, by mincore.
std::size_t resident(const DmaBuffer& buffer) {
  std::vector<unsigned char> pages(buffer.size() / static_cast<std::size_t>(::getpagesize()));
  EXPECT_EQ(::mincore(buffer.data(), buffer.size(), pages.data()), 0);
  std::size_t count = 0;
  for (unsigned char page : pages) count += page & 1;
  return count;
}

// The mapping perf test's prefault=no rows rely on this: untouched memory
// until the map faults it in.
TEST(Backings, PrefaultNoLeavesPagesOut) {
  for (Backing backing : {Backing::anonymous, Backing::memfd}) {
    auto cold = check(DmaBuffer::allocate(backing, 64 * 1024, Prefault::no));
    EXPECT_EQ(resident(cold), 0u) << backing_info(backing).name;
    auto warm = check(DmaBuffer::allocate(backing, 64 * 1024));
    EXPECT_EQ(resident(warm), 16u) << backing_info(backing).name;
  }
}

}  // namespace
}  // namespace vfiolab
