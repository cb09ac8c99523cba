// vfio_lab_environment_test: checks that a machine is ready for the suite:
// the VFIO and IOMMUFD device nodes exist and each named device is on
// vfio-pci with its IOMMU group and VFIO device nodes in place. Lists each
// device's group and its members.
//
//   vfio_lab_environment_test [--same-group BDF,BDF]... [--sriov BDF,N]... BDF...
//
// BDFs may also come from VFIO_SELFTESTS_BDF. --same-group asserts that two
// devices share one IOMMU group (the lab's pair behind a PCI bridge);
// --sriov that a device offers N SR-IOV virtual functions (sriov_totalvfs).
// KTAP on stdout; exit 0 pass, 1 fail, 4 skip.
#include "vfiolab/ktap.h"
#include "vfiolab/sysfs.h"
#include "vfiolab/text.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace vfiolab;
namespace fs = std::filesystem;

using ktap::kExitFail;

struct Check {
  std::string name;
  bool ok;
  std::string detail;
};

std::string join(const std::vector<Bdf>& bdfs) {
  std::string text;
  for (const auto& bdf : bdfs) text += (text.empty() ? "" : " ") + bdf.str();
  return text;
}

void check_device(const Sysfs& sysfs, const Bdf& bdf, std::vector<Check>& checks) {
  const std::string prefix = bdf.str();
  auto present = sysfs.exists(bdf);
  if (!present) {
    checks.push_back({prefix + ".present", false, present.error().message()});
    return;
  }
  if (!*present) {
    checks.push_back({prefix + ".present", false, fmt::format("{} does not exist", sysfs.device_dir(bdf).string())});
    return;
  }
  auto driver = sysfs.driver(bdf);
  checks.push_back({prefix + ".on_vfio_pci", driver && *driver == "vfio-pci",
                    fmt::format("{} {:04x}:{:04x} driver {}", prefix, sysfs.vendor(bdf).value_or(0),
                                sysfs.device_id(bdf).value_or(0),
                                driver ? driver->value_or("none") : driver.error().message())});

  auto read_group = sysfs.iommu_group(bdf);
  if (!read_group || !*read_group) {
    checks.push_back({prefix + ".iommu_group", false,
                      read_group ? "no iommu_group link: is an IOMMU enabled?" : read_group.error().message()});
    return;
  }
  const int group = **read_group;
  fs::path group_node = fmt::format("/dev/vfio/{}", group);
  checks.push_back({prefix + ".group_node", fs::exists(group_node),
                    fmt::format("iommu group {} (members: {}), {} {}", group,
                                join(sysfs.iommu_group_members(group).value_or(std::vector<Bdf>{})),
                                group_node.string(), fs::exists(group_node) ? "present" : "missing")});

  auto read_cdev = sysfs.vfio_cdev(bdf);
  if (!read_cdev) {
    checks.push_back({prefix + ".cdev_node", false, read_cdev.error().message()});
    return;
  }
  const auto& cdev = *read_cdev;
  bool cdev_ok = cdev && fs::exists(fs::path("/dev/vfio/devices") / *cdev);
  checks.push_back({prefix + ".cdev_node", cdev_ok,
                    cdev ? fmt::format("/dev/vfio/devices/{} {}", *cdev, cdev_ok ? "present" : "missing")
                         : std::string("no vfio-dev entry in sysfs (kernel without VFIO_DEVICE_CDEV?)")});
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Bdf> devices;
  std::vector<std::pair<Bdf, Bdf>> same_group;
  std::vector<std::pair<Bdf, std::string>> sriov;
  // A bad argument is a FAIL, with a message naming it.
  auto refuse = [](std::string_view problem) {
    fmt::print(stderr, "vfio_lab_environment_test: {}\n", problem);
    return kExitFail;
  };
  auto parse_or_exit = [&](std::string_view text) {
    auto bdf = parse_bdf(text);
    if (!bdf) std::exit(refuse(bdf.error().message()));
    return *bdf;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg != "--same-group" && arg != "--sriov") {
      devices.push_back(parse_or_exit(arg));
      continue;
    }
    auto value = text::option_value(argc, argv, i);
    if (!value) return refuse(value.error().message());
    const std::string_view pair = *value;
    const auto comma = pair.find(',');
    if (arg == "--same-group") {
      if (comma == std::string_view::npos) return refuse(fmt::format("--same-group wants BDF,BDF, not '{}'", pair));
      same_group.emplace_back(parse_or_exit(pair.substr(0, comma)), parse_or_exit(pair.substr(comma + 1)));
    } else {
      if (comma == std::string_view::npos || comma + 1 == pair.size()) {
        return refuse(fmt::format("--sriov wants BDF,N, not '{}'", pair));
      }
      sriov.emplace_back(parse_or_exit(pair.substr(0, comma)), std::string(pair.substr(comma + 1)));
    }
  }
  if (devices.empty()) {
    if (const char* env = std::getenv("VFIO_SELFTESTS_BDF")) devices.push_back(parse_or_exit(env));
  }

  ktap::Writer out;
  out.header();
  if (devices.empty()) {
    return out.skip_all(
        "usage: vfio_lab_environment_test [--same-group BDF,BDF]... BDF... (or set VFIO_SELFTESTS_BDF)");
  }

  Sysfs sysfs;
  std::vector<Check> checks;
  const std::pair<const char*, const char*> nodes[] = {{"dev_vfio_vfio", "/dev/vfio/vfio"},
                                                       {"dev_iommu", "/dev/iommu"}};
  for (const auto& [name, node] : nodes) {
    bool present = fs::exists(node);
    checks.push_back({name, present, fmt::format("{} {}", node, present ? "present" : "missing")});
  }
  for (const auto& bdf : devices) check_device(sysfs, bdf, checks);
  for (const auto& [a, b] : same_group) {
    auto group_a = sysfs.iommu_group(a).value_or(std::nullopt);
    auto group_b = sysfs.iommu_group(b).value_or(std::nullopt);
    checks.push_back({fmt::format("{}+{}.same_group", a.str(), b.str()), group_a && group_a == group_b,
                      fmt::format("{} in group {}, {} in group {}", a.str(), group_a ? std::to_string(*group_a) : "none",
                                  b.str(), group_b ? std::to_string(*group_b) : "none")});
  }

  for (const auto& [bdf, want] : sriov) {
    std::ifstream file(sysfs.device_dir(bdf) / "sriov_totalvfs");
    std::string total;
    const bool read = static_cast<bool>(file >> total);
    checks.push_back({fmt::format("{}.sriov_totalvfs", bdf.str()), read && total == want,
                      read ? fmt::format("{} offers {} virtual functions (want {})", bdf.str(), total, want)
                           : fmt::format("{} has no sriov_totalvfs: no SR-IOV capability", bdf.str())});
  }
  out.plan(static_cast<int>(checks.size()));
  for (const auto& check : checks) {
    out.diagnostic(check.detail);
    out.result(check.ok, check.name);
  }
  return out.finish();
}
