// vfio-setup's state files (setup::parse_device_state,
// parse_hugepage_state). A file is sealed with a checksum, which random
// bytes almost never match: an input whose first byte is odd has the rest
// sealed here, so that the fuzzer reaches the lines behind the seal.
#include "fuzz.h"
#include "state.h"

#include <fmt/format.h>

namespace {

using namespace vfiolab;
using fuzz::require;

bool same(const setup::DeviceState& a, const setup::DeviceState& b) {
  return a.bdf == b.bdf && a.driver == b.driver && a.driver_override == b.driver_override &&
         a.sriov_numvfs == b.sriov_numvfs && a.vfio_pci_enable_sriov == b.vfio_pci_enable_sriov;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string text(fuzz::as_text(data + 1, size - 1));
  if (data[0] & 1) text += fmt::format("checksum={:016x}\n", setup::checksum(text));

  if (const auto state = setup::parse_device_state(text)) {
    require(!state->bdf.empty(), "a device state names its device");
    require(state->driver.find('/') == std::string::npos && state->driver != "." && state->driver != "..",
            "a driver is a name, not a path");
    const auto again = setup::parse_device_state(setup::serialize(*state));
    require(again && same(*state, *again), "a device state written out again reads the same");
  }
  if (const auto state = setup::parse_hugepage_state(text)) {
    const auto again = setup::parse_hugepage_state(setup::serialize(*state));
    require(again && again->pages_2m == state->pages_2m && again->pages_1g == state->pages_1g,
            "a hugepage state written out again reads the same");
  }
  return 0;
}
