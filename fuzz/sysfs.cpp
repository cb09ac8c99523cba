// What sysfs gives as text: a device's `resource` file
// (parse_pci_resources) and BDFs (parse_bdf).
#include "fuzz.h"
#include "vfiolab/sysfs.h"

#include <fmt/format.h>

#include <algorithm>

namespace {

using namespace vfiolab;
using fuzz::require;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = fuzz::as_text(data, size);

  // A BDF that parses prints as one that parses to the same BDF, in the
  // long form, which prints as itself.
  if (const auto bdf = parse_bdf(text)) {
    require(bdf->device <= 0x1f && bdf->function <= 7, "device and function are in range");
    const std::string printed = bdf->str();
    const auto again = parse_bdf(printed);
    require(again && *again == *bdf, "a parsed BDF prints as text that parses to it");
    require(again->str() == printed, "the long form prints as itself");
  }

  // Each line of a resource file that parses is three numbers: written out
  // again as the kernel writes them, the file parses to the same.
  if (const auto resources = parse_pci_resources(text)) {
    require(resources->size() <= static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1,
            "at most one resource a line");
    std::string again;
    for (const auto& resource : *resources) {
      again += fmt::format("0x{:016x} 0x{:016x} 0x{:016x}\n", resource.start, resource.end, resource.flags);
      if (resource.start == 0 && resource.end == 0) require(resource.size() == 0, "an absent resource has no size");
    }
    const auto reparsed = parse_pci_resources(again);
    require(reparsed && reparsed->size() == resources->size(), "a resource file written out again parses");
    for (std::size_t i = 0; i < resources->size(); ++i) {
      const auto& a = (*resources)[i];
      const auto& b = (*reparsed)[i];
      require(a.start == b.start && a.end == b.end && a.flags == b.flags, "and reads the same");
    }
  }
  return 0;
}
