#include "check.h"
#include "state.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace vfiolab::setup {
namespace {

std::string sealed(const std::string& body);

DeviceState e1000e_state() {
  DeviceState state;
  state.bdf = "0000:00:06.0";
  state.driver = "e1000e";
  state.driver_override = "";
  state.sriov_numvfs = 2;
  return state;
}

TEST(VfioSetupState, RoundTrips) {
  DeviceState original = e1000e_state();
  auto parsed = check(parse_device_state(serialize(original)));
  EXPECT_EQ(parsed.bdf, original.bdf);
  EXPECT_EQ(parsed.driver, "e1000e");
  EXPECT_EQ(parsed.driver_override, "");
  EXPECT_EQ(parsed.sriov_numvfs, 2u);

  DeviceState unbound;
  unbound.bdf = "0000:00:04.0";
  auto parsed_unbound = check(parse_device_state(serialize(unbound)));
  EXPECT_EQ(parsed_unbound.driver, "");
  EXPECT_FALSE(parsed_unbound.sriov_numvfs);
  EXPECT_FALSE(parsed_unbound.vfio_pci_enable_sriov);
}

TEST(VfioSetupState, VfioPciEnableSriovRoundTrips) {
  for (bool before : {false, true}) {
    DeviceState pf = e1000e_state();
    pf.driver = "vfio-pci";
    pf.vfio_pci_enable_sriov = before;
    auto parsed = check(parse_device_state(serialize(pf)));
    EXPECT_EQ(parsed.vfio_pci_enable_sriov, before);
  }
  auto bad = parse_device_state(sealed(
      "vfio-setup device state v1\nbdf=0000:00:09.0\ndriver=vfio-pci\ndriver_override=\nvfio_pci_enable_sriov=Y\n"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().context.find("vfio_pci_enable_sriov is not 0 or 1: 'Y'"), std::string::npos) << bad.error();
}

TEST(VfioSetupState, EveryTornPrefixIsRejected) {
  std::string text = serialize(e1000e_state());
  for (std::size_t length = 0; length < text.size() - 1; ++length) {
    EXPECT_FALSE(parse_device_state(text.substr(0, length))) << "accepted a file cut at " << length << " bytes";
  }
}

TEST(VfioSetupState, EditedFileFailsTheChecksum) {
  std::string text = serialize(e1000e_state());
  auto at = text.find("e1000e");
  text.replace(at, 6, "igb   ");
  auto parsed = parse_device_state(text);
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message().find("checksum"), std::string::npos);
  // A parse error: no errno, the detail in the context.
  EXPECT_EQ(parsed.error().errnum, 0);
  EXPECT_NE(parsed.error().context.find("checksum"), std::string::npos);
}

// Builds a file with a valid seal around arbitrary lines, to test what the
// parser does with well-sealed nonsense.
std::string sealed(const std::string& body) {
  return body + fmt::format("checksum={:016x}\n", checksum(body));
}

TEST(VfioSetupState, SealedButWrongContentIsRejected) {
  EXPECT_FALSE(parse_device_state(sealed("something else v9\nbdf=0000:00:06.0\n")));
  EXPECT_FALSE(parse_device_state(sealed("vfio-setup device state v1\nbdf=0000:00:06.0\ndriver=e1000e\n")));
  EXPECT_FALSE(parse_device_state(sealed(
      "vfio-setup device state v1\nbdf=0000:00:06.0\ndriver=e1000e\ndriver_override=\ncolour=blue\n")));
  EXPECT_FALSE(parse_device_state(sealed(
      "vfio-setup device state v1\nbdf=0000:00:06.0\ndriver=../../x\ndriver_override=\n")));
  EXPECT_FALSE(parse_device_state(sealed(
      "vfio-setup device state v1\nbdf=0000:00:06.0\ndriver=e1000e\ndriver=igb\ndriver_override=\n")));
  EXPECT_FALSE(parse_device_state(sealed(
      "vfio-setup device state v1\nbdf=0000:00:06.0\ndriver=e1000e\ndriver_override=\nsriov_numvfs=-1\n")));
  EXPECT_FALSE(parse_device_state(sealed("vfio-setup device state v1\nno equals sign\n")));
  EXPECT_FALSE(parse_device_state(""));
  EXPECT_FALSE(parse_device_state("checksum=0000000000000000\n"));
  EXPECT_FALSE(parse_device_state(std::string("\0\xff garbage", 10)));
}

TEST(VfioSetupState, HugepageCountsRoundTripAndRejectCorruption) {
  HugepageState state{64, 1};
  auto parsed = check(parse_hugepage_state(serialize(state)));
  EXPECT_EQ(parsed.pages_2m, 64u);
  EXPECT_EQ(parsed.pages_1g, 1u);
  EXPECT_FALSE(parse_hugepage_state(serialize(e1000e_state())));
  EXPECT_FALSE(parse_hugepage_state(sealed("vfio-setup hugepage state v1\npages_2m=x\npages_1g=1\n")));
  std::string text = serialize(state);
  EXPECT_FALSE(parse_hugepage_state(text.substr(0, text.size() / 2)));
}

}  // namespace
}  // namespace vfiolab::setup
