// vfio_pci_sriov_test: VF tokens of an SR-IOV PF on vfio-pci, in every IOMMU
// mode: the group path (VFIO_GROUP_GET_DEVICE_FD with "BDF vf_token=UUID")
// in the type1 and compat modes, the cdev path (VFIO_DEVICE_BIND_IOMMUFD
// with VFIO_DEVICE_BIND_FLAG_TOKEN) in native iommufd mode.
//
// The device is the PF, with at least one VF enabled and on vfio-pci, e.g.
//   vfio-setup run -d PF --vfs 1 -- vfio_pci_sriov_test
// which also puts the VF count back afterwards.
//
// Each test opens the PF with token A (which makes A its VF token), then
// opens VF 0 with A, with another token B, or with none. What vfio-pci
// must answer: the VF opens with its PF's token only, and a wrong or
// missing token is refused with EACCES, whether the PF is still open or
// was closed, and after the PF's user changed the token
// (VFIO_DEVICE_FEATURE_PCI_VF_TOKEN).
//
// On an 82576 PF (QEMU's igb), the VF then copies memory with its own
// driver (igbvf), the PF set up for it by this process as its kernel driver
// would (igb::VfHost), and each function in an IOMMU context of its own:
// the copies must land, the VF's MSI-X must fire, and a source that only the
// PF's context maps must not be read (the device's DMA is the VF's).
#include "driver_fixture.h"
#include "scope_exit.h"

#include "vfiolab/drivers/igb.h"
#include "vfiolab/sysfs.h"
#include "vfiolab/vf_token.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>

namespace vfiolab {
namespace {

constexpr const char* kTokenA = "52ac9bff-3a88-4fbd-901a-0d767c3b6c97";
constexpr const char* kTokenB = "88594674-90a0-47a9-aea8-9d9b352ac08a";

// The token the VF is opened with.
enum class VfTokenCase { same, different, none };

std::string_view case_name(VfTokenCase token_case) {
  switch (token_case) {
    case VfTokenCase::same: return "same_token";
    case VfTokenCase::different: return "different_token";
    case VfTokenCase::none: return "no_token";
  }
  return "?";
}

VfToken token(const char* text) { return check(VfToken::parse(text)); }

// The PF under test and its VF 0 (on vfio-pci, as vfio-pci puts a VF of
// a PF it drives), or a SKIP saying why there is none.
class SriovFixture {
 protected:
  void find_vf() {
    Sysfs sysfs;
    pf_ = check(parse_bdf(harness::device_bdf()));
    const unsigned total = check(sysfs.sriov_totalvfs(pf_)).value_or(0);
    if (total == 0) GTEST_SKIP() << pf_.str() << " has no SR-IOV (no sriov_totalvfs, or 0)";
    if (check(sysfs.sriov_numvfs(pf_)).value_or(0) == 0) {
      GTEST_SKIP() << pf_.str() << " has no VF enabled (of " << total
                   << "): run this under 'vfio-setup run -d " << pf_.str() << " --vfs 1 -- ...'";
    }
    auto vf = check(sysfs.sriov_vf(pf_, 0));
    ASSERT_TRUE(vf) << pf_.str() << " has VFs enabled but no virtfn0 link";
    vf_ = *vf;
    // A VF of a PF on vfio-pci lands on vfio-pci itself (vfio-pci sets its
    // driver_override when the VF appears).
    ASSERT_EQ(check(sysfs.driver(vf_)).value_or("(none)"), "vfio-pci") << "VF " << vf_.str();
    ASSERT_EQ(check(sysfs.sriov_pf(vf_)), pf_) << "VF " << vf_.str() << "'s physfn link";
  }

  // Opens the PF in `iommu` with token A, which makes A its VF token.
  void open_pf(const std::shared_ptr<Iommu>& iommu) {
    auto opened = PciDevice::open(pf_.str(), iommu, token(kTokenA));
    if (!opened && iommu->uses_cdev() && opened.error().errnum == EINVAL) {
      // A kernel that takes tokens on the cdev path never answers a PF's
      // token with EINVAL; one from before VFIO_DEVICE_BIND_FLAG_TOKEN
      // refuses any flag that way.
      GTEST_SKIP() << "this kernel's VFIO_DEVICE_BIND_IOMMUFD takes no VF token (no VFIO_DEVICE_BIND_FLAG_TOKEN): "
                   << opened.error();
    }
    pf_device_ = check(std::move(opened));
    pf_token_ = token(kTokenA);
  }

  Bdf pf_;
  Bdf vf_;
  std::unique_ptr<PciDevice> pf_device_;
  VfToken pf_token_;
};

using Param = std::tuple<IommuMode, VfTokenCase>;

class SriovTokenTest : public testing::TestWithParam<Param>, protected SriovFixture {
 protected:
  void SetUp() override {
    find_vf();
    if (IsSkipped() || HasFatalFailure()) return;
    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(std::get<0>(GetParam())));
    iommu_ = std::move(iommu);
    open_pf(iommu_);
  }

  std::optional<VfToken> vf_token() const {
    switch (std::get<1>(GetParam())) {
      case VfTokenCase::same: return token(kTokenA);
      case VfTokenCase::different: return token(kTokenB);
      case VfTokenCase::none: return std::nullopt;
    }
    return std::nullopt;
  }

  // Opens VF 0 with the variant's token and checks vfio-pci's answer
  // against the PF's token: it opens with exactly that one, and is
  // refused with EACCES otherwise.
  void open_vf_and_judge() {
    const std::optional<VfToken> given = vf_token();
    auto vf = PciDevice::open(vf_.str(), iommu_, given);
    const std::string given_text = given ? given->str() : std::string("no token");
    if (given == pf_token_) {
      const auto device = check(std::move(vf));
      // It is the VF, opened: its config space reads its own IDs.
      EXPECT_EQ(device->vendor_id(), check(Sysfs().vendor(vf_)));
      EXPECT_EQ(device->device_id(), check(Sysfs().device_id(vf_)));
      return;
    }
    ASSERT_FALSE(vf) << "VF " << vf_.str() << " opened with " << given_text << " although its PF's token is "
                     << pf_token_.str();
    EXPECT_EQ(vf.error().errnum, EACCES) << vf.error();
  }

  std::shared_ptr<Iommu> iommu_;
};

// The PF is open with token A: the VF opens with A only.
TEST_P(SriovTokenTest, init_token_match) { open_vf_and_judge(); }

// The PF was opened with A and closed: A stays its token, and the VF still
// needs it.
TEST_P(SriovTokenTest, pf_early_close) {
  pf_device_.reset();
  open_vf_and_judge();
}

// The PF's user sets token B: from then on the VF opens with B only.
TEST_P(SriovTokenTest, override_token) {
  VFIOLAB_ASSERT_OK(pf_device_->set_vf_token(token(kTokenB)));
  pf_token_ = token(kTokenB);
  open_vf_and_judge();
}

std::string param_name(const testing::TestParamInfo<Param>& info) {
  return fmt::format("{}_{}", iommu_mode_info(std::get<0>(info.param)).name, case_name(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(vfio_pci_sriov_test, SriovTokenTest,
                         testing::Combine(testing::ValuesIn(harness::all_modes()),
                                          testing::Values(VfTokenCase::same, VfTokenCase::different,
                                                          VfTokenCase::none)),
                         param_name);

constexpr std::byte kUntouched{0xee};

// VF 0 copying with its own driver: the driver fixture's, on the VF (its
// iommu_ and device_) with the VF's driver. The PF and the VF each have an
// IOMMU context of their own (two containers, or two iommufd instances),
// and every buffer is mapped in the VF's only.
class SriovVfDmaTest : protected SriovFixture, public vfio_pci_driver_test {
 protected:
  void SetUp() override {
    find_vf();
    if (IsSkipped() || HasFatalFailure()) return;
    VFIOLAB_ASSIGN_OR_SKIP(pf_iommu, Iommu::open(GetParam()));
    pf_iommu_ = std::move(pf_iommu);
    open_pf(pf_iommu_);
    if (IsSkipped() || HasFatalFailure()) return;
    if (!igb::probe(*pf_device_)) {
      GTEST_SKIP() << fmt::format("the PF is {:04x}:{:04x}, not an 82576: vfiolab drives VFs of igb only",
                                  pf_device_->vendor_id(), pf_device_->device_id());
    }
    VFIOLAB_ASSIGN_OR_SKIP(vf_iommu, Iommu::open(GetParam()));
    iommu_ = std::move(vf_iommu);
    device_ = check(PciDevice::open(vf_.str(), iommu_, pf_token_));
    ASSERT_TRUE(igb::probe_vf(*device_)) << fmt::format("VF {:04x}:{:04x} of an 82576", device_->vendor_id(),
                                                        device_->device_id());

    VFIOLAB_ASSIGN_OR_SKIP(host, igb::VfHost::create(*pf_device_, 0, driver_options_from_environment(*pf_device_)));
    host_ = std::move(host);
    start_driver([this](PciDevice& vf) -> Result<DriverHandle> { return igb::create_vf(vf, *host_); });
  }

  void TearDown() override {
    vfio_pci_driver_test::TearDown();
    driver_.reset();  // before its host
  }

  // Copies `size` bytes from src_ + src_offset to dst_ + dst_offset and
  // checks every byte of the destination buffer: the copy inside, nothing
  // written outside.
  void copy_and_check(std::uint64_t src_offset, std::uint64_t dst_offset, std::uint64_t size) {
    auto src = src_->bytes();
    auto dst = dst_->bytes();
    fill_random(src);
    std::fill(dst.begin(), dst.end(), kUntouched);
    const std::string what = fmt::format("{} bytes from src+{:#x} to dst+{:#x}", size, src_offset, dst_offset);
    check(memcpy_chunked(*driver_, src_->region.iova + src_offset, dst_->region.iova + dst_offset, size));
    EXPECT_EQ(std::memcmp(src.data() + src_offset, dst.data() + dst_offset, size), 0)
        << what << ": the destination differs from the source";
    const auto outside = [&](std::byte b) { return b == kUntouched; };
    EXPECT_TRUE(std::all_of(dst.begin(), dst.begin() + dst_offset, outside)) << what << ": bytes before it written";
    EXPECT_TRUE(std::all_of(dst.begin() + dst_offset + size, dst.end(), outside)) << what << ": bytes after it written";
  }

  std::shared_ptr<Iommu> pf_iommu_;
  std::unique_ptr<igb::VfHost> host_;
};

// Whole buffers, one byte, and odd sizes at odd places.
TEST_P(SriovVfDmaTest, vf_memcpy) {
  copy_and_check(0, 0, kBufferSize);
  copy_and_check(0, 0, 1);
  copy_and_check(5, 4093, 4099);
  copy_and_check(4097, 3, kBufferSize - 4097 - 3);
}

// The VF's own MSI-X vector 0, raised by the VF's driver; none before.
TEST_P(SriovVfDmaTest, vf_send_msi) {
  const std::uint32_t vector = *driver_->msi_vector();
  const auto before = check(device_->irq_eventfd(vector).read());
  EXPECT_FALSE(before.has_value()) << "vector " << vector << " fired before send_msi (" << before.value_or(0)
                                   << " times), during init or the copies";
  VFIOLAB_ASSERT_OK(driver_->send_msi());
  const auto count = check(device_->irq_eventfd(vector).wait(kMsiTimeout));
  EXPECT_TRUE(count.has_value()) << "no MSI-X on the VF's vector " << vector << " within " << kMsiTimeout.count()
                                  << " ms";
}

// A source mapped in the PF's context only, at an IOVA the VF's context
// does not map: the IOMMU must block the read and name the VF in its fault.
// The driver cannot always tell (QEMU's model sends what a blocked read
// left in its bounce buffer), so the checks are the data's: none of the
// source reaches the destination, which stays as it was when the copy
// fails. The device copies again afterwards. The source's data at the
// destination would mean the device read it as the PF.
TEST_P(SriovVfDmaTest, vf_dma_is_the_vf_s) {
  const std::uint64_t iova = unmapped_iova();
  auto memory = check(DmaBuffer::allocate(Backing::anonymous, kBufferSize));
  const DmaRegion pf_only{memory.bytes(), iova, kBufferSize};
  VFIOLAB_ASSERT_OK(pf_iommu_->map(pf_only));
  // Unmapped before the memory goes, on every way out of the test.
  const ScopeExit unmap_at_exit([&] { (void)pf_iommu_->unmap(pf_only); });
  const std::span<std::byte> source(memory.bytes(), kBufferSize);
  fill_random(source);
  auto dst = dst_->bytes();
  std::fill(dst.begin(), dst.end(), kUntouched);

  auto witness = FaultWitness::before(vf_);
  auto copied = driver_->memcpy(pf_only.iova, dst_->region.iova, kBufferSize);
  ASSERT_TRUE(blocked_copy_ran(copied));
  for (std::size_t at = 0; at < kBufferSize; at += 64) {
    ASSERT_NE(std::memcmp(dst.data() + at, source.data() + at, 64), 0)
        << "data that only the PF's IOMMU context maps reached the VF's destination at offset " << at;
  }
  if (!copied) {
    EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](std::byte b) { return b == kUntouched; }))
        << "the destination changed although the copy failed";
  }
  copy_and_check(0, 0, 4096);

  witness.expect_caught(pf_only.iova, kBufferSize, [&]() -> Result<void> {
    auto again = driver_->memcpy(pf_only.iova, dst_->region.iova, kBufferSize);
    if (!again && again.error().errnum != EIO) return again;
    return {};
  });
}

INSTANTIATE_TEST_SUITE_P(vfio_pci_sriov_test, SriovVfDmaTest, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);

}  // namespace
}  // namespace vfiolab
