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
#include "device.h"

#include "vfiolab/sysfs.h"
#include "vfiolab/vf_token.h"

#include <fmt/format.h>

#include <cerrno>
#include <optional>
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

using Param = std::tuple<IommuMode, VfTokenCase>;

class SriovTokenTest : public testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    Sysfs sysfs;
    auto pf = parse_bdf(harness::device_bdf());
    ASSERT_TRUE(pf) << pf.error();
    pf_ = *pf;
    const unsigned total = sysfs.sriov_totalvfs(pf_).value_or(0);
    if (total == 0) GTEST_SKIP() << pf_.str() << " has no SR-IOV (no sriov_totalvfs, or 0)";
    if (sysfs.sriov_numvfs(pf_).value_or(0) == 0) {
      GTEST_SKIP() << pf_.str() << " has no VF enabled (of " << total
                   << "): run this under 'vfio-setup run -d " << pf_.str() << " --vfs 1 -- ...'";
    }
    auto vf = sysfs.sriov_vf(pf_, 0);
    ASSERT_TRUE(vf) << pf_.str() << " has VFs enabled but no virtfn0 link";
    vf_ = *vf;
    // A VF of a PF on vfio-pci lands on vfio-pci itself (vfio-pci sets its
    // driver_override when the VF appears).
    ASSERT_EQ(sysfs.driver(vf_).value_or("(none)"), "vfio-pci") << "VF " << vf_.str();
    ASSERT_EQ(sysfs.sriov_pf(vf_), pf_) << "VF " << vf_.str() << "'s physfn link";

    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(std::get<0>(GetParam())));
    iommu_ = std::move(iommu);
    auto opened = PciDevice::open(pf_.str(), iommu_, token(kTokenA));
    if (!opened && iommu_->uses_cdev() && opened.error().errnum == EINVAL) {
      // A kernel that takes tokens on the cdev path never answers a PF's
      // token with EINVAL; one from before VFIO_DEVICE_BIND_FLAG_TOKEN
      // refuses any flag that way.
      GTEST_SKIP() << "this kernel's VFIO_DEVICE_BIND_IOMMUFD takes no VF token (no VFIO_DEVICE_BIND_FLAG_TOKEN): "
                   << opened.error();
    }
    ASSERT_TRUE(opened) << "the PF with token " << kTokenA << ": " << opened.error();
    pf_device_ = std::move(*opened);
    pf_token_ = token(kTokenA);
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
      ASSERT_TRUE(vf) << "VF " << vf_.str() << " with its PF's token " << given_text << ": " << vf.error();
      // It is the VF, opened: its config space reads its own IDs.
      EXPECT_EQ((*vf)->vendor_id(), Sysfs().vendor(vf_));
      EXPECT_EQ((*vf)->device_id(), Sysfs().device_id(vf_));
      return;
    }
    ASSERT_FALSE(vf) << "VF " << vf_.str() << " opened with " << given_text << " although its PF's token is "
                     << pf_token_.str();
    EXPECT_EQ(vf.error().errnum, EACCES) << vf.error();
  }

  Bdf pf_;
  Bdf vf_;
  std::shared_ptr<Iommu> iommu_;
  std::unique_ptr<PciDevice> pf_device_;
  VfToken pf_token_;
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

}  // namespace
}  // namespace vfiolab
