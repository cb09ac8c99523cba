// PCI addresses (BDF) and what sysfs says about a PCI device: its IDs,
// driver, IOMMU group and VFIO device node. The sysfs root is a parameter so
// host unit tests can point it at a fake tree of files.
#pragma once

#include "vfiolab/error.h"

#include <compare>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab {

// segment:bus:device.function, as in /sys/bus/pci/devices/0000:00:04.0.
struct Bdf {
  std::uint16_t segment = 0;
  std::uint8_t bus = 0;
  std::uint8_t device = 0;    // 0..31
  std::uint8_t function = 0;  // 0..7
  std::string str() const;
  auto operator<=>(const Bdf&) const = default;
};

// Accepts "SSSS:BB:DD.F" and the short "BB:DD.F" (segment 0), hex digits in
// either case. The error (errnum 0) names what is wrong with the text.
Result<Bdf> parse_bdf(std::string_view text);

// One line of a device's sysfs `resource` file: a BAR (lines 0-5), the
// expansion ROM (6), then bridge windows or SR-IOV BARs. start == end == 0
// for one the device does not have.
struct PciResource {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint64_t flags = 0;  // IORESOURCE_*
  std::uint64_t size() const { return end == 0 && start == 0 ? 0 : end - start + 1; }
  bool io() const { return flags & 0x100; }   // IORESOURCE_IO
  bool mem() const { return flags & 0x200; }  // IORESOURCE_MEM
};

// Parses the `resource` file: lines of three hex numbers (0x-prefixed).
// The error names the line and what is wrong with it.
Result<std::vector<PciResource>> parse_pci_resources(std::string_view text);

// What sysfs says about PCI devices. Each getter tells three things apart:
// the value; a state that is legitimately absent (no driver bound, no IOMMU
// group, no SR-IOV), as an empty optional inside the Result; and a file that
// could not be read or says something malformed, as an Error that names the
// file and carries the errno (errnum 0 for malformed text). A device that is
// not there at all reads as absent where an absent state exists (driver,
// group, cdev, SR-IOV) and as an ENOENT error where none does (vendor,
// device ID): ask exists() first when it matters.
class Sysfs {
 public:
  explicit Sysfs(std::filesystem::path root = "/sys");

  std::filesystem::path device_dir(const Bdf& bdf) const;
  // Whether the device's folder is there; an error (naming the folder)
  // when that cannot be told: a stat that failed other than with ENOENT
  // (out of memory, a link loop) says nothing about the device.
  Result<bool> exists(const Bdf& bdf) const;
  Result<std::uint16_t> vendor(const Bdf& bdf) const;
  Result<std::uint16_t> device_id(const Bdf& bdf) const;
  // Name of the bound driver; empty when the device has none.
  Result<std::optional<std::string>> driver(const Bdf& bdf) const;
  // Empty when the device has no IOMMU group (no IOMMU, or none given yet).
  Result<std::optional<int>> iommu_group(const Bdf& bdf) const;
  // The group's devices, sorted; an error for a group that does not exist.
  Result<std::vector<Bdf>> iommu_group_members(int group) const;
  // "vfio0" for /dev/vfio/devices/vfio0; empty unless the kernel has VFIO
  // cdev and the device is on a VFIO driver.
  Result<std::optional<std::string>> vfio_cdev(const Bdf& bdf) const;
  // SR-IOV: VFs enabled now and the most the device offers; empty for a
  // device without SR-IOV (no such file).
  Result<std::optional<unsigned>> sriov_numvfs(const Bdf& bdf) const;
  Result<std::optional<unsigned>> sriov_totalvfs(const Bdf& bdf) const;
  // The PF's VF number `index` (its virtfnINDEX link); empty while VFs are
  // not enabled or when there are fewer.
  Result<std::optional<Bdf>> sriov_vf(const Bdf& pf, unsigned index) const;
  // A VF's PF (its physfn link); empty for a device that is no VF.
  Result<std::optional<Bdf>> sriov_pf(const Bdf& vf) const;
  // What the PCI core says about the device's BARs and its config space:
  // the `resource` file, and the `config` file's bytes (as many as the
  // kernel lets this user read: all of them for root).
  Result<std::vector<PciResource>> resources(const Bdf& bdf) const;
  Result<std::vector<std::byte>> config(const Bdf& bdf) const;

 private:
  std::filesystem::path root_;
};

}  // namespace vfiolab
