#include "vfiolab/pci_device.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstring>

namespace vfiolab {
namespace {

// VFIO_DEVICE_BIND_IOMMUFD's argument with the VF token that newer kernels
// take (VFIO_DEVICE_BIND_FLAG_TOKEN). Spelled out here so a build against
// older uAPI headers still sends it: the running kernel decides, and one
// without the flag refuses it (EINVAL for any flag).
struct BindWithToken {
  std::uint32_t argsz;
  std::uint32_t flags;
  std::int32_t iommufd;
  std::uint32_t out_devid;
  alignas(8) std::uint64_t token_uuid_ptr;
};
static_assert(offsetof(BindWithToken, out_devid) == offsetof(vfio_device_bind_iommufd, out_devid));
static_assert(offsetof(BindWithToken, token_uuid_ptr) == 16);
constexpr std::uint32_t kBindFlagToken = 1u << 0;
#ifdef VFIO_DEVICE_BIND_FLAG_TOKEN
static_assert(VFIO_DEVICE_BIND_FLAG_TOKEN == kBindFlagToken);
static_assert(offsetof(vfio_device_bind_iommufd, token_uuid_ptr) == offsetof(BindWithToken, token_uuid_ptr));
#endif

constexpr std::uint16_t kCommandBusMaster = 1u << 2;
// BARs are mapped at an address aligned to their size (up to 1 GiB) so the
// kernel can back them with huge mappings.
constexpr std::uint64_t kMaxBarAlignment = 1ull << 30;

std::uint64_t bar_alignment(std::uint64_t size) {
  std::uint64_t align = std::bit_ceil(std::max<std::uint64_t>(size, 4096));
  return std::min(align, kMaxBarAlignment);
}

// Maps `length` bytes of the device fd at `offset` at an address aligned to
// `align`: reserve a larger inaccessible area, map over its aligned middle,
// and let the reservation's slack go.
Result<MemoryMapping> map_aligned(int fd, std::uint64_t offset, std::uint64_t length, std::uint64_t align, int prot) {
  std::uint64_t reserve_length = length + align;
  void* reserved = ::mmap(nullptr, reserve_length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) {
    const int err = errno;
    return std::unexpected(make_error(err, "mmap reservation"));
  }
  auto base = reinterpret_cast<std::uintptr_t>(reserved);
  std::uintptr_t aligned = (base + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
  // The slack on either side goes when these do; there is always some after
  // the aligned part, and some before it unless the reservation was aligned.
  MemoryMapping head = aligned == base ? MemoryMapping() : MemoryMapping(reserved, aligned - base);
  MemoryMapping tail(reinterpret_cast<void*>(aligned + length), base + reserve_length - (aligned + length));
  void* mapped = ::mmap(reinterpret_cast<void*>(aligned), length, prot, MAP_SHARED | MAP_FIXED, fd,
                        static_cast<off_t>(offset));
  if (mapped == MAP_FAILED) {
    const int err = errno;
    Error error = make_error(err, "mmap", fmt::format("offset {:#x} length {:#x}", offset, length));
    MemoryMapping cleanup(reinterpret_cast<void*>(aligned), length);  // the reservation's middle
    return std::unexpected(error);
  }
  return MemoryMapping(mapped, length);
}

}  // namespace

std::string_view irq_index_name(IrqIndex index) {
  switch (index) {
    case IrqIndex::intx: return "INTx";
    case IrqIndex::msi: return "MSI";
    case IrqIndex::msix: return "MSI-X";
  }
  return "?";
}

Error PciDevice::error_here(int errnum, std::string operation, std::string detail) const {
  std::string context = fmt::format("mode {}", iommu_->mode_name());
  if (!detail.empty()) context += " " + detail;
  return device_error(errnum, bdf_.str(), std::move(operation), std::move(context));
}

Result<std::unique_ptr<PciDevice>> PciDevice::open(std::string_view bdf_text, std::shared_ptr<Iommu> iommu,
                                                   const std::optional<VfToken>& vf_token) {
  VFIOLAB_ASSIGN_OR_RETURN(const Bdf bdf, parse_bdf(bdf_text));
  Sysfs sysfs;
  VFIOLAB_ASSIGN_OR_RETURN(const bool present, sysfs.exists(bdf));
  if (!present) {
    return std::unexpected(make_error(
        0, "PciDevice::open", fmt::format("no PCI device {} ({} does not exist)", bdf.str(), sysfs.device_dir(bdf).string())));
  }
  VFIOLAB_ASSIGN_OR_RETURN(const auto driver, sysfs.driver(bdf));
  if (driver != "vfio-pci") {
    return std::unexpected(make_error(
        0, "PciDevice::open",
        fmt::format("{} is {}, not on vfio-pci (bind it first: vfio-setup bind {})", bdf.str(),
                    driver ? "bound to " + *driver : std::string("bound to no driver"), bdf.str())));
  }
  if (!iommu) return std::unexpected(make_error(EINVAL, "PciDevice::open", "no Iommu given"));

  auto device = std::make_unique<PciDevice>(Key{}, bdf, std::move(iommu));
  VFIOLAB_TRY(device->iommu_->uses_cdev() ? device->open_through_cdev(vf_token) : device->open_through_group(vf_token));
  VFIOLAB_TRY(device->read_info_and_map_bars());
  return device;
}

Result<void> PciDevice::open_through_group(const std::optional<VfToken>& vf_token) {
  Sysfs sysfs;
  VFIOLAB_ASSIGN_OR_RETURN(const auto group, sysfs.iommu_group(bdf_));
  if (!group) {
    return std::unexpected(make_error(0, "PciDevice::open", fmt::format("{} has no IOMMU group: is an IOMMU enabled?", bdf_.str())));
  }
  VFIOLAB_ASSIGN_OR_RETURN(const int group_fd, iommu_->attach_group(*group));
  // vfio-pci reads a token from the name: "BDF vf_token=UUID".
  std::string name = bdf_.str();
  if (vf_token) name += " vf_token=" + vf_token->str();
  device_.reset(::ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, name.c_str()));
  if (!device_) {
    const int err = errno;
    return std::unexpected(error_here(err, "VFIO_GROUP_GET_DEVICE_FD", fmt::format("group {} '{}'", *group, name)));
  }
  return {};
}

Result<void> PciDevice::open_through_cdev(const std::optional<VfToken>& vf_token) {
  Sysfs sysfs;
  VFIOLAB_ASSIGN_OR_RETURN(const auto cdev, sysfs.vfio_cdev(bdf_));
  if (!cdev) {
    return std::unexpected(unsupported_error(
        0, "PciDevice::open", fmt::format("{} has no VFIO device cdev (kernel without CONFIG_VFIO_DEVICE_CDEV?)", bdf_.str())));
  }
  std::string path = "/dev/vfio/devices/" + *cdev;
  device_.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!device_) {
    const int err = errno;
    return std::unexpected(error_here(err, "open " + path));
  }

  BindWithToken bind{};
  bind.argsz = sizeof(bind);
  bind.iommufd = iommu_->iommufd();
  if (vf_token) {
    bind.flags = kBindFlagToken;
    bind.token_uuid_ptr = reinterpret_cast<std::uintptr_t>(vf_token->bytes.data());
  }
  if (::ioctl(device_.get(), VFIO_DEVICE_BIND_IOMMUFD, &bind) != 0) {
    const int err = errno;
    return std::unexpected(
        error_here(err, "VFIO_DEVICE_BIND_IOMMUFD", vf_token ? "with VF token " + vf_token->str() : std::string()));
  }
  devid_ = bind.out_devid;
  return attach_ioas(iommu_->ioas_id());
}

Result<void> PciDevice::attach_ioas(std::uint32_t pt_id) {
  vfio_device_attach_iommufd_pt attach{};
  attach.argsz = sizeof(attach);
  attach.pt_id = pt_id;
  if (::ioctl(device_.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) != 0) {
    const int err = errno;
    return std::unexpected(error_here(err, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", fmt::format("pt_id {}", pt_id)));
  }
  return {};
}

Result<void> PciDevice::set_vf_token(const VfToken& token) {
  // vfio_device_feature with the UUID as its data[].
  alignas(vfio_device_feature) std::byte buffer[sizeof(vfio_device_feature) + sizeof(token.bytes)]{};
  vfio_device_feature header{};
  header.argsz = sizeof(buffer);
  header.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PCI_VF_TOKEN;
  std::memcpy(buffer, &header, sizeof(header));
  std::memcpy(buffer + sizeof(header), token.bytes.data(), sizeof(token.bytes));
  if (::ioctl(device_.get(), VFIO_DEVICE_FEATURE, buffer) != 0) {
    const int err = errno;
    return std::unexpected(error_here(err, "VFIO_DEVICE_FEATURE_PCI_VF_TOKEN", "set " + token.str()));
  }
  return {};
}

Result<void> PciDevice::detach_ioas() {
  vfio_device_detach_iommufd_pt detach{};
  detach.argsz = sizeof(detach);
  if (::ioctl(device_.get(), VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach) != 0) {
    const int err = errno;
    return std::unexpected(error_here(err, "VFIO_DEVICE_DETACH_IOMMUFD_PT"));
  }
  return {};
}

Result<void> PciDevice::read_info_and_map_bars() {
  info_.argsz = sizeof(info_);
  if (::ioctl(device_.get(), VFIO_DEVICE_GET_INFO, &info_) != 0) {
    const int err = errno;
    return std::unexpected(error_here(err, "VFIO_DEVICE_GET_INFO"));
  }
  if (!(info_.flags & VFIO_DEVICE_FLAGS_PCI)) {
    return std::unexpected(device_error(0, bdf_.str(), "VFIO_DEVICE_GET_INFO", "not a PCI device"));
  }
  VFIOLAB_ASSIGN_OR_RETURN(config_region_, region_info(VFIO_PCI_CONFIG_REGION_INDEX));
  // Vendor, device, command, status, revision, class code (little endian).
  std::array<std::uint8_t, 12> header{};
  VFIOLAB_TRY(config_read(0x00, header.data(), header.size()));
  vendor_id_ = static_cast<std::uint16_t>(header[0] | header[1] << 8);
  device_id_ = static_cast<std::uint16_t>(header[2] | header[3] << 8);
  class_code_ = static_cast<std::uint32_t>(header[9] | header[10] << 8 | header[11] << 16);

  for (std::uint32_t index = 0; index < kBarCount && index < info_.num_regions; ++index) {
    Bar& bar = bars_[index];
    VFIOLAB_ASSIGN_OR_RETURN(bar.info, region_info(index));
    bar.index = index;
    // A BAR with sparse areas (an MSI-X table inside, say) is left for the
    // caller to map area by area.
    if (bar.info.size == 0 || !bar.info.mmappable() || !bar.info.sparse_areas.empty()) continue;
    int prot = (bar.info.readable() ? PROT_READ : 0) | (bar.info.writable() ? PROT_WRITE : 0);
    auto mapping = map_aligned(device_.get(), bar.info.offset, bar.info.size, bar_alignment(bar.info.size), prot);
    if (!mapping) {
      Error error = mapping.error();
      error.context = fmt::format("{} BAR{} {}", bdf_.str(), index, error.context);
      return std::unexpected(error);
    }
    bar.mapping = std::move(*mapping);
  }
  return {};
}

Result<RegionInfo> PciDevice::region_info(std::uint32_t index) const {
  std::vector<std::byte> buffer(sizeof(vfio_region_info));
  vfio_region_info header{};
  for (int attempt = 0; attempt < 4; ++attempt) {
    header = {};
    header.argsz = static_cast<std::uint32_t>(buffer.size());
    header.index = index;
    std::memcpy(buffer.data(), &header, sizeof(header));
    if (::ioctl(device_.get(), VFIO_DEVICE_GET_REGION_INFO, buffer.data()) != 0) {
      const int err = errno;
      return std::unexpected(error_here(err, "VFIO_DEVICE_GET_REGION_INFO", fmt::format("region {}", index)));
    }
    std::memcpy(&header, buffer.data(), sizeof(header));
    if (header.argsz <= buffer.size()) break;
    buffer.resize(header.argsz);  // room for the capability chain
  }
  RegionInfo info;
  info.index = index;
  info.flags = header.flags;
  info.size = header.size;
  info.offset = header.offset;
  if ((header.flags & VFIO_REGION_INFO_FLAG_CAPS) && header.cap_offset != 0) {
    auto caps = parse_info_capabilities(buffer, header.cap_offset);
    if (!caps) return std::unexpected(wrap_error(caps.error(), EPROTO, "VFIO_DEVICE_GET_REGION_INFO capabilities"));
    if (const auto* cap = find_info_capability(*caps, VFIO_REGION_INFO_CAP_SPARSE_MMAP)) {
      auto areas = decode_sparse_mmap(*cap);
      if (!areas) return std::unexpected(wrap_error(areas.error(), EPROTO, "VFIO_REGION_INFO_CAP_SPARSE_MMAP"));
      info.sparse_areas = std::move(*areas);
    }
    if (const auto* cap = find_info_capability(*caps, VFIO_REGION_INFO_CAP_TYPE)) {
      auto type = decode_region_type(*cap);
      if (!type) return std::unexpected(wrap_error(type.error(), EPROTO, "VFIO_REGION_INFO_CAP_TYPE"));
      info.type = *type;
    }
    info.msix_mappable = find_info_capability(*caps, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) != nullptr;
  }
  return info;
}

Result<void> PciDevice::config_read(std::uint32_t offset, void* data, std::size_t size) const {
  ssize_t got = ::pread(device_.get(), data, size, static_cast<off_t>(config_region_.offset + offset));
  if (got != static_cast<ssize_t>(size)) {
    const int err = got < 0 ? errno : EIO;  // a short read has no errno of its own
    return std::unexpected(error_here(err, "pread config", fmt::format("offset {:#x} size {}", offset, size)));
  }
  return {};
}

Result<void> PciDevice::config_write(std::uint32_t offset, const void* data, std::size_t size) {
  ssize_t put = ::pwrite(device_.get(), data, size, static_cast<off_t>(config_region_.offset + offset));
  if (put != static_cast<ssize_t>(size)) {
    const int err = put < 0 ? errno : EIO;
    return std::unexpected(error_here(err, "pwrite config", fmt::format("offset {:#x} size {}", offset, size)));
  }
  return {};
}

// Where `size` bytes at `offset` of region `index` are in the device fd;
// an error naming the access when they are not all inside the region.
Result<off_t> PciDevice::region_file_offset(std::uint32_t index, std::uint64_t offset, std::size_t size,
                                            const char* operation) const {
  VFIOLAB_ASSIGN_OR_RETURN(const auto region, region_info(index));
  if (offset > region.size || size > region.size - offset) {
    return std::unexpected(error_here(EINVAL, operation,
                                      fmt::format("region {} offset {:#x} size {}: the region has {:#x} bytes", index,
                                                  offset, size, region.size)));
  }
  return static_cast<off_t>(region.offset + offset);
}

Result<void> PciDevice::region_read(std::uint32_t index, std::uint64_t offset, void* data, std::size_t size) const {
  VFIOLAB_ASSIGN_OR_RETURN(const off_t at, region_file_offset(index, offset, size, "pread region"));
  ssize_t got = ::pread(device_.get(), data, size, at);
  if (got != static_cast<ssize_t>(size)) {
    const int err = got < 0 ? errno : EIO;  // a short read has no errno of its own
    return std::unexpected(
        error_here(err, "pread region", fmt::format("region {} offset {:#x} size {}", index, offset, size)));
  }
  return {};
}

Result<void> PciDevice::region_write(std::uint32_t index, std::uint64_t offset, const void* data, std::size_t size) {
  VFIOLAB_ASSIGN_OR_RETURN(const off_t at, region_file_offset(index, offset, size, "pwrite region"));
  ssize_t put = ::pwrite(device_.get(), data, size, at);
  if (put != static_cast<ssize_t>(size)) {
    const int err = put < 0 ? errno : EIO;
    return std::unexpected(
        error_here(err, "pwrite region", fmt::format("region {} offset {:#x} size {}", index, offset, size)));
  }
  return {};
}

Result<std::uint16_t> PciDevice::command() const { return config_read<std::uint16_t>(0x04); }

Result<void> PciDevice::update_command(std::uint16_t set, std::uint16_t clear) {
  VFIOLAB_ASSIGN_OR_RETURN(const std::uint16_t now, command());
  return config_write<std::uint16_t>(0x04, static_cast<std::uint16_t>((now | set) & ~clear));
}

Result<void> PciDevice::set_bus_master(bool enable) {
  return enable ? update_command(kCommandBusMaster, 0) : update_command(0, kCommandBusMaster);
}

Result<std::vector<std::byte>> PciDevice::config_space() const {
  std::vector<std::byte> bytes(std::min<std::uint64_t>(config_region_.size, 4096));
  VFIOLAB_TRY(config_read(0, bytes.data(), bytes.size()));
  return bytes;
}

Result<std::vector<PciCapability>> PciDevice::capabilities() const {
  VFIOLAB_ASSIGN_OR_RETURN(const auto config, config_space());
  auto caps = walk_pci_capabilities(config);
  if (!caps) return std::unexpected(wrap_error(caps.error(), EPROTO, "PCI capability list", bdf_.str()));
  return caps;
}

Result<std::vector<PciCapability>> PciDevice::ext_capabilities() const {
  VFIOLAB_ASSIGN_OR_RETURN(const auto config, config_space());
  auto caps = walk_pci_ext_capabilities(config);
  if (!caps) return std::unexpected(wrap_error(caps.error(), EPROTO, "PCI extended capability list", bdf_.str()));
  return caps;
}

Result<std::optional<std::uint16_t>> PciDevice::find_capability(std::uint8_t id) const {
  VFIOLAB_ASSIGN_OR_RETURN(const auto caps, capabilities());
  for (const auto& cap : caps) {
    if (cap.id == id) return cap.offset;
  }
  return std::nullopt;
}

Result<std::optional<std::uint16_t>> PciDevice::find_ext_capability(std::uint16_t id) const {
  VFIOLAB_ASSIGN_OR_RETURN(const auto caps, ext_capabilities());
  for (const auto& cap : caps) {
    if (cap.id == id) return cap.offset;
  }
  return std::nullopt;
}

Result<IrqInfo> PciDevice::irq_info(IrqIndex index) const {
  vfio_irq_info info{};
  info.argsz = sizeof(info);
  info.index = static_cast<std::uint32_t>(index);
  if (::ioctl(device_.get(), VFIO_DEVICE_GET_IRQ_INFO, &info) != 0) {
    const int err = errno;
    return std::unexpected(error_here(err, "VFIO_DEVICE_GET_IRQ_INFO", std::string(irq_index_name(index))));
  }
  return IrqInfo{info.index, info.flags, info.count};
}

Result<void> PciDevice::set_irq_eventfds(IrqIndex index, const std::vector<int>& fds) {
  std::vector<std::byte> buffer(sizeof(vfio_irq_set) + fds.size() * sizeof(std::int32_t));
  vfio_irq_set set{};
  set.argsz = static_cast<std::uint32_t>(buffer.size());
  set.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set.index = static_cast<std::uint32_t>(index);
  set.start = 0;
  set.count = static_cast<std::uint32_t>(fds.size());
  std::memcpy(buffer.data(), &set, sizeof(set));
  for (std::size_t i = 0; i < fds.size(); ++i) {
    std::int32_t fd = fds[i];
    std::memcpy(buffer.data() + sizeof(set) + i * sizeof(fd), &fd, sizeof(fd));
  }
  const int rc = ::ioctl(device_.get(), VFIO_DEVICE_SET_IRQS, buffer.data());
  if (rc < 0) {
    const int err = errno;
    return std::unexpected(error_here(err,
        "VFIO_DEVICE_SET_IRQS", fmt::format("enable {} {} vector(s)", irq_index_name(index), fds.size())));
  }
  if (rc > 0) {
    // vfio-pci's MSI and MSI-X enable returns the number of vectors the PCI
    // core could allocate when it is fewer than asked (vfio_msi_enable: "return
    // the number of supported vectors if we can't get all"), having enabled
    // none: no errno is set, and errno holds a stale one. Out of vectors.
    return std::unexpected(error_here(ENOSPC, "VFIO_DEVICE_SET_IRQS",
        fmt::format("enable {} {} vector(s): returned {}, the vectors the kernel could get; none enabled",
                    irq_index_name(index), fds.size(), rc)));
  }
  return {};
}

Result<void> PciDevice::enable_irqs(IrqIndex index, std::uint32_t count) {
  std::vector<EventFd> eventfds;
  std::vector<int> fds;
  for (std::uint32_t i = 0; i < count; ++i) {
    VFIOLAB_ASSIGN_OR_RETURN(auto eventfd, EventFd::create());
    fds.push_back(eventfd.fd());
    eventfds.push_back(std::move(eventfd));
  }
  VFIOLAB_TRY(set_irq_eventfds(index, fds));
  enabled_irq_ = index;
  irq_eventfds_ = std::move(eventfds);
  return {};
}

Result<void> PciDevice::disable_irqs(IrqIndex index) {
  vfio_irq_set set{};
  set.argsz = sizeof(set);
  set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  set.index = static_cast<std::uint32_t>(index);
  set.count = 0;
  if (::ioctl(device_.get(), VFIO_DEVICE_SET_IRQS, &set) != 0) {
    const int err = errno;
    return std::unexpected(error_here(err, "VFIO_DEVICE_SET_IRQS", fmt::format("disable {}", irq_index_name(index))));
  }
  if (enabled_irq_ == index) {
    enabled_irq_.reset();
    irq_eventfds_.clear();
  }
  return {};
}

Result<void> PciDevice::trigger_irq(IrqIndex index, std::uint32_t vector) {
  vfio_irq_set set{};
  set.argsz = sizeof(set);
  set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  set.index = static_cast<std::uint32_t>(index);
  set.start = vector;
  set.count = 1;
  if (::ioctl(device_.get(), VFIO_DEVICE_SET_IRQS, &set) != 0) {
    const int err = errno;
    return std::unexpected(
        error_here(err, "VFIO_DEVICE_SET_IRQS", fmt::format("trigger {} vector {}", irq_index_name(index), vector)));
  }
  return {};
}

Result<void> PciDevice::intx_action(std::uint32_t action, std::string_view what) {
  vfio_irq_set set{};
  set.argsz = sizeof(set);
  set.flags = VFIO_IRQ_SET_DATA_NONE | action;
  set.index = VFIO_PCI_INTX_IRQ_INDEX;
  set.start = 0;
  set.count = 1;
  if (::ioctl(device_.get(), VFIO_DEVICE_SET_IRQS, &set) != 0) {
    const int err = errno;
    return std::unexpected(error_here(err, "VFIO_DEVICE_SET_IRQS", std::string(what)));
  }
  return {};
}

Result<void> PciDevice::mask_intx() { return intx_action(VFIO_IRQ_SET_ACTION_MASK, "mask INTx"); }

Result<void> PciDevice::unmask_intx() { return intx_action(VFIO_IRQ_SET_ACTION_UNMASK, "unmask INTx"); }

Result<void> PciDevice::reset() {
  // The kernel resets with pci_try_reset_function(), which answers EAGAIN
  // while someone else holds the device's lock (a sysfs reader, a reset of
  // the bus): tried again, 10 ms apart, for up to 200 ms.
  constexpr int kTries = 20;
  int tries = 0;
  int status = 0;
  while ((status = ::ioctl(device_.get(), VFIO_DEVICE_RESET)) != 0 && errno == EAGAIN && ++tries < kTries) {
    ::usleep(10'000);
  }
  if (status != 0) {
    const int err = errno;
    Error error = error_here(err, "VFIO_DEVICE_RESET");
    if (err == EAGAIN) error.context += fmt::format(" (still busy after {} tries, 10 ms apart)", kTries);
    if (!has_reset()) error.unsupported = true;
    return std::unexpected(error);
  }
  if (!enabled_irq_) return {};
  std::vector<int> fds;
  for (const auto& eventfd : irq_eventfds_) fds.push_back(eventfd.fd());
  return set_irq_eventfds(*enabled_irq_, fds);
}

Result<std::vector<HotResetDevice>> PciDevice::hot_reset_info() const {
  std::vector<std::byte> buffer(sizeof(vfio_pci_hot_reset_info));
  vfio_pci_hot_reset_info header{};
  for (int attempt = 0; attempt < 4; ++attempt) {
    header = {};
    header.argsz = static_cast<std::uint32_t>(buffer.size());
    std::memcpy(buffer.data(), &header, sizeof(header));
    int rc = ::ioctl(device_.get(), VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, buffer.data());
    std::memcpy(&header, buffer.data(), sizeof(header));
    if (rc == 0) break;
    const int err = errno;
    if (err == ENOSPC) {
      buffer.resize(sizeof(header) + header.count * sizeof(vfio_pci_dependent_device));
      continue;
    }
    Error error = error_here(err, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO");
    if (err == ENODEV) error.context += ": the device has neither a slot nor a bus reset";
    error.unsupported = err == ENODEV || err == ENOTTY;
    return std::unexpected(error);
  }
  std::vector<HotResetDevice> devices;
  for (std::uint32_t i = 0; i < header.count && sizeof(header) + (i + 1) * sizeof(vfio_pci_dependent_device) <= buffer.size(); ++i) {
    vfio_pci_dependent_device raw{};
    std::memcpy(&raw, buffer.data() + sizeof(header) + i * sizeof(raw), sizeof(raw));
    Bdf bdf{raw.segment, raw.bus, static_cast<std::uint8_t>(raw.devfn >> 3), static_cast<std::uint8_t>(raw.devfn & 7)};
    devices.push_back({bdf, raw.group_id});
  }
  return devices;
}

PciDevice::~PciDevice() {
  if (enabled_irq_ && device_) (void)disable_irqs(*enabled_irq_);
}

}  // namespace vfiolab
