// The device copies memory through the IOMMU, in every IOMMU mode, and
// every byte arrives. vfiolab::harness gives main(): device by BDF, KTAP.
#include "vfiolab/drivers.h"
#include "vfiolab/harness/device.h"

#include <algorithm>
#include <cstring>

namespace {
using namespace vfiolab;

class device_copy_test : public testing::TestWithParam<IommuMode> {};

TEST_P(device_copy_test, bytes_arrive) {
  VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(GetParam()));
  VFIOLAB_ASSIGN_OR_SKIP(device, PciDevice::open(harness::device_bdf(), iommu));
  VFIOLAB_ASSIGN_OR_SKIP(driver, probe_driver(*device));
  auto iovas = check(iommu->iova_allocator(driver->iova_limit()));
  auto ring = check(iommu->map_new(iovas, Backing::anonymous, driver->region_size()));
  auto src = check(iommu->map_new(iovas, Backing::anonymous, 4096));
  auto dst = check(iommu->map_new(iovas, Backing::anonymous, 4096));
  VFIOLAB_ASSERT_OK(driver->init(ring.region));
  const auto size = std::min<std::uint64_t>(driver->max_memcpy_size(), 4000);
  for (std::uint64_t i = 0; i < size; ++i) src.bytes()[i] = static_cast<std::byte>(i * 7 + 1);
  VFIOLAB_ASSERT_OK(driver->memcpy(src.region.iova, dst.region.iova, size));
  EXPECT_EQ(std::memcmp(src.bytes().data(), dst.bytes().data(), size), 0);
  VFIOLAB_EXPECT_OK(driver->remove());
}

INSTANTIATE_TEST_SUITE_P(device_copy_test, device_copy_test, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);
}  // namespace
