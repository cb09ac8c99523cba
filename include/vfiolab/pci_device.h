// A PCI device opened through VFIO: through its IOMMU group and a container
// (type1 and compat modes) or through its device cdev bound to an iommufd
// (native mode). Config space, capabilities, regions and BARs, interrupts
// (one eventfd per vector) and reset.
#pragma once

#include "vfiolab/capabilities.h"
#include "vfiolab/error.h"
#include "vfiolab/iommu.h"
#include "vfiolab/irq.h"
#include "vfiolab/sysfs.h"
#include "vfiolab/unique_fd.h"
#include "vfiolab/vf_token.h"

#include <linux/vfio.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vfiolab {

struct RegionInfo {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;  // VFIO_REGION_INFO_FLAG_*
  std::uint64_t size = 0;
  std::uint64_t offset = 0;  // of the region in the device fd
  std::vector<SparseMmapArea> sparse_areas;  // only the areas here may be mmap'd, when present
  std::optional<RegionType> type;
  bool msix_mappable = false;
  bool readable() const { return flags & VFIO_REGION_INFO_FLAG_READ; }
  bool writable() const { return flags & VFIO_REGION_INFO_FLAG_WRITE; }
  bool mmappable() const { return flags & VFIO_REGION_INFO_FLAG_MMAP; }
};

struct Bar {
  std::uint32_t index = 0;
  RegionInfo info;
  MemoryMapping mapping;  // empty when the BAR cannot be mmap'd
  void* address() const { return mapping.get(); }
};

struct HotResetDevice {
  Bdf bdf;
  std::uint32_t group_or_devid = 0;  // group id, or device id in cdev mode
};

enum class IrqIndex : std::uint32_t {
  intx = VFIO_PCI_INTX_IRQ_INDEX,
  msi = VFIO_PCI_MSI_IRQ_INDEX,
  msix = VFIO_PCI_MSIX_IRQ_INDEX,
};
std::string_view irq_index_name(IrqIndex index);

class PciDevice {
  struct Key {  // only open() can make one: construction goes through it
    explicit Key() = default;
  };

 public:
  PciDevice(Key, Bdf bdf, std::shared_ptr<Iommu> iommu) : bdf_(bdf), iommu_(std::move(iommu)) {}
  // Checks the BDF, that the device exists and is on vfio-pci, then opens
  // it through `iommu` (attaching it to the container or the IOAS) and maps
  // every mmap-able BAR. Errors say which of those failed.
  // With a VF token (vf_token.h): an SR-IOV PF takes it as its token when
  // it has none in use; a VF opens only with its PF's token. The kernel's
  // own error (EACCES for a wrong or missing token, EINVAL for a device that
  // is neither PF nor VF, or a kernel whose cdev path takes no token) comes
  // back unchanged.
  static Result<std::unique_ptr<PciDevice>> open(std::string_view bdf, std::shared_ptr<Iommu> iommu,
                                                 const std::optional<VfToken>& vf_token = std::nullopt);
  ~PciDevice();
  PciDevice(const PciDevice&) = delete;
  PciDevice& operator=(const PciDevice&) = delete;

  const Bdf& bdf() const { return bdf_; }
  std::string name() const { return bdf_.str(); }
  Iommu& iommu() const { return *iommu_; }
  const std::shared_ptr<Iommu>& shared_iommu() const { return iommu_; }
  int fd() const { return device_.get(); }
  const vfio_device_info& info() const { return info_; }
  std::uint32_t iommufd_device_id() const { return devid_; }  // native iommufd mode

  // Regions.
  Result<RegionInfo> region_info(std::uint32_t index) const;
  const Bar& bar(std::uint32_t index) const { return bars_.at(index); }
  static constexpr std::uint32_t kBarCount = VFIO_PCI_ROM_REGION_INDEX;

  // Config space, through the VFIO config region (vfio-pci virtualises
  // parts of it).
  Result<void> config_read(std::uint32_t offset, void* data, std::size_t size) const;
  Result<void> config_write(std::uint32_t offset, const void* data, std::size_t size);
  template <typename T>
  Result<T> config_read(std::uint32_t offset) const {
    static_assert(sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4);
    T value{};
    VFIOLAB_TRY(config_read(offset, &value, sizeof(T)));
    return value;
  }
  template <typename T>
  Result<void> config_write(std::uint32_t offset, T value) {
    static_assert(sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4);
    return config_write(offset, &value, sizeof(T));
  }
  // A region's bytes through the device fd (pread/pwrite at the region's
  // offset): reaches every part of a BAR, mmap-able or not.
  Result<void> region_read(std::uint32_t index, std::uint64_t offset, void* data, std::size_t size) const;
  Result<void> region_write(std::uint32_t index, std::uint64_t offset, const void* data, std::size_t size);

  // The IDs, read once when the device was opened.
  std::uint16_t vendor_id() const { return vendor_id_; }
  std::uint16_t device_id() const { return device_id_; }
  std::uint32_t class_code() const { return class_code_; }  // base class, subclass, programming interface
  Result<std::uint16_t> command() const;
  // Sets then clears bits of the command register (read, modify, write).
  Result<void> update_command(std::uint16_t set, std::uint16_t clear);
  Result<void> set_bus_master(bool enable);
  // The whole config space as VFIO exposes it (256 or 4096 bytes).
  Result<std::vector<std::byte>> config_space() const;
  Result<std::vector<PciCapability>> capabilities() const;
  Result<std::vector<PciCapability>> ext_capabilities() const;
  // The capability's offset; nullopt when the device has none.
  Result<std::optional<std::uint16_t>> find_capability(std::uint8_t id) const;
  Result<std::optional<std::uint16_t>> find_ext_capability(std::uint16_t id) const;

  // Interrupts: `count` vectors, each with its own eventfd.
  Result<IrqInfo> irq_info(IrqIndex index) const;
  Result<void> enable_irqs(IrqIndex index, std::uint32_t count);
  Result<void> disable_irqs(IrqIndex index);
  // Fires vector's eventfd through VFIO (a software trigger, no device).
  Result<void> trigger_irq(IrqIndex index, std::uint32_t vector);
  Result<void> mask_intx();
  Result<void> unmask_intx();
  EventFd& irq_eventfd(std::uint32_t vector) { return irq_eventfds_.at(vector); }
  std::optional<IrqIndex> enabled_irq_index() const { return enabled_irq_; }
  std::uint32_t enabled_irq_count() const { return static_cast<std::uint32_t>(irq_eventfds_.size()); }

  // Reset.
  bool has_reset() const { return info_.flags & VFIO_DEVICE_FLAGS_RESET; }
  // VFIO_DEVICE_RESET, then the interrupts that were enabled are enabled
  // again with the same eventfds.
  Result<void> reset();
  // Devices affected by a bus reset of this one; unsupported when the
  // device has no bus reset.
  Result<std::vector<HotResetDevice>> hot_reset_info() const;

  // SR-IOV PF: makes `token` the one its VFs must be opened with
  // (VFIO_DEVICE_FEATURE_PCI_VF_TOKEN).
  Result<void> set_vf_token(const VfToken& token);

  // Native iommufd mode: detach from the IOAS and attach again.
  Result<void> detach_ioas();
  Result<void> attach_ioas(std::uint32_t pt_id);

 private:
  Result<void> open_through_group(const std::optional<VfToken>& vf_token);
  Result<void> open_through_cdev(const std::optional<VfToken>& vf_token);
  Result<void> read_info_and_map_bars();
  Result<void> set_irq_eventfds(IrqIndex index, const std::vector<int>& fds);
  Result<void> intx_action(std::uint32_t action, std::string_view what);
  Result<off_t> region_file_offset(std::uint32_t index, std::uint64_t offset, std::size_t size,
                                   const char* operation) const;
  // An error about this device, with the errno the caller saved.
  Error error_here(int errnum, std::string operation, std::string detail = {}) const;

  Bdf bdf_;
  std::shared_ptr<Iommu> iommu_;
  UniqueFd device_;
  vfio_device_info info_{};
  std::uint16_t vendor_id_ = 0;
  std::uint16_t device_id_ = 0;
  std::uint32_t class_code_ = 0;
  std::uint32_t devid_ = 0;
  RegionInfo config_region_;
  std::array<Bar, kBarCount> bars_{};
  std::optional<IrqIndex> enabled_irq_;
  std::vector<EventFd> irq_eventfds_;
};

}  // namespace vfiolab
