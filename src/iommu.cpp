#include "vfiolab/iommu.h"

#include "vfiolab/capabilities.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <vector>

namespace vfiolab {
namespace {

constexpr std::array kModes{
    IommuModeInfo{IommuMode::vfio_type1_iommu, "vfio_type1_iommu", "/dev/vfio/vfio", VFIO_TYPE1_IOMMU},
    IommuModeInfo{IommuMode::vfio_type1v2_iommu, "vfio_type1v2_iommu", "/dev/vfio/vfio", VFIO_TYPE1v2_IOMMU},
    IommuModeInfo{IommuMode::iommufd_compat_type1, "iommufd_compat_type1", "/dev/iommu", VFIO_TYPE1_IOMMU},
    IommuModeInfo{IommuMode::iommufd_compat_type1v2, "iommufd_compat_type1v2", "/dev/iommu", VFIO_TYPE1v2_IOMMU},
    IommuModeInfo{IommuMode::iommufd, "iommufd", nullptr, 0},
};

std::string range_text(std::uint64_t iova, std::uint64_t size) {
  return fmt::format("iova {:#x} size {:#x}", iova, size);
}

// Opening a node that is not there means the kernel lacks the feature.
Error open_error(int err, const char* path, std::string_view mode) {
  Error error = make_error(err, fmt::format("open {}", path), fmt::format("mode {}", mode));
  if (err == ENOENT || err == ENODEV || err == ENXIO) error.unsupported = true;
  if (err == EACCES || err == EPERM) error.context += "; run as root or grant access to the node";
  return error;
}

}  // namespace

std::span<const IommuModeInfo> all_iommu_modes() { return kModes; }

const IommuModeInfo& iommu_mode_info(IommuMode mode) {
  for (const auto& info : kModes) {
    if (info.mode == mode) return info;
  }
  return kModes.back();
}

Result<IommuMode> iommu_mode_from_name(std::string_view name) {
  std::string known;
  for (const auto& info : kModes) {
    if (info.name == name) return info.mode;
    known += (known.empty() ? "" : ", ") + std::string(info.name);
  }
  return std::unexpected(
      make_error(EINVAL, "iommu_mode_from_name", fmt::format("unknown IOMMU mode '{}'; known: {}", name, known)));
}

Result<std::shared_ptr<Iommu>> Iommu::open(IommuMode mode) {
  auto iommu = std::make_shared<Iommu>(Key{}, mode);
  const IommuModeInfo& info = iommu_mode_info(mode);
  if (info.container_path != nullptr) {
    iommu->container_.reset(::open(info.container_path, O_RDWR | O_CLOEXEC));
    if (!iommu->container_) {
      const int err = errno;
      return std::unexpected(open_error(err, info.container_path, info.name));
    }
    int version = ::ioctl(iommu->container_.get(), VFIO_GET_API_VERSION);
    if (version != VFIO_API_VERSION) {
      return std::unexpected(make_error(EINVAL, "VFIO_GET_API_VERSION",
                                        fmt::format("{} reports {}, expected {}", info.container_path, version,
                                                    VFIO_API_VERSION)));
    }
    int supported = ::ioctl(iommu->container_.get(), VFIO_CHECK_EXTENSION, info.iommu_type);
    if (supported <= 0) {
      return std::unexpected(unsupported_error(
          ENOTSUP, "VFIO_CHECK_EXTENSION", fmt::format("{} does not offer mode {}", info.container_path, info.name)));
    }
    return iommu;
  }

  iommu->iommufd_.reset(::open("/dev/iommu", O_RDWR | O_CLOEXEC));
  if (!iommu->iommufd_) {
    const int err = errno;
    return std::unexpected(open_error(err, "/dev/iommu", info.name));
  }
  iommu_ioas_alloc alloc{};
  alloc.size = sizeof(alloc);
  if (::ioctl(iommu->iommufd_.get(), IOMMU_IOAS_ALLOC, &alloc) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "IOMMU_IOAS_ALLOC", "mode iommufd"));
  }
  iommu->ioas_id_ = alloc.out_ioas_id;
  return iommu;
}

int Iommu::iommufd() const {
  if (mode_ == IommuMode::iommufd) return iommufd_.get();
  if (mode_ == IommuMode::iommufd_compat_type1 || mode_ == IommuMode::iommufd_compat_type1v2) return container_.get();
  return -1;
}

Result<void> Iommu::set_container_iommu() {
  if (iommu_type_set_) return {};
  const IommuModeInfo& info = iommu_mode_info(mode_);
  if (::ioctl(container_.get(), VFIO_SET_IOMMU, info.iommu_type) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "VFIO_SET_IOMMU", fmt::format("mode {}", info.name)));
  }
  iommu_type_set_ = true;
  return {};
}

Result<int> Iommu::attach_group(int group) {
  if (uses_cdev()) {
    return std::unexpected(make_error(EINVAL, "Iommu::attach_group", "native iommufd mode uses device cdevs"));
  }
  std::lock_guard lock(mutex_);  // devices may be opened from several threads
  if (auto found = groups_.find(group); found != groups_.end()) return found->second.get();

  std::string path = fmt::format("/dev/vfio/{}", group);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    Error error = make_error(err, fmt::format("open {}", path), fmt::format("mode {}", mode_name()));
    if (err == EBUSY) error.context += "; the group is open elsewhere (another process or container)";
    return std::unexpected(error);
  }
  vfio_group_status status{};
  status.argsz = sizeof(status);
  if (::ioctl(fd.get(), VFIO_GROUP_GET_STATUS, &status) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "VFIO_GROUP_GET_STATUS", path));
  }
  if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
    return std::unexpected(make_error(
        EINVAL, "VFIO_GROUP_GET_STATUS",
        fmt::format("IOMMU group {} is not viable: every device in it must be on vfio-pci or on no driver", group)));
  }
  int container = container_.get();
  if (::ioctl(fd.get(), VFIO_GROUP_SET_CONTAINER, &container) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "VFIO_GROUP_SET_CONTAINER", fmt::format("group {} mode {}", group, mode_name())));
  }
  // The IOMMU type can only be set once a group is in the container.
  VFIOLAB_TRY(set_container_iommu());
  int raw = fd.get();
  groups_.emplace(group, std::move(fd));
  return raw;
}

Result<void> Iommu::map_in_kernel(const DmaRegion& region, std::uint32_t access) {
  if (mode_ == IommuMode::iommufd) {
    iommu_ioas_map map{};
    map.size = sizeof(map);
    map.flags = IOMMU_IOAS_MAP_FIXED_IOVA;
    if (access & dma_read) map.flags |= IOMMU_IOAS_MAP_READABLE;
    if (access & dma_write) map.flags |= IOMMU_IOAS_MAP_WRITEABLE;
    map.ioas_id = ioas_id_;
    map.user_va = reinterpret_cast<std::uintptr_t>(region.vaddr);
    map.length = region.size;
    map.iova = region.iova;
    if (::ioctl(iommufd_.get(), IOMMU_IOAS_MAP, &map) != 0) {
      const int err = errno;
      return std::unexpected(make_error(err, "IOMMU_IOAS_MAP", range_text(region.iova, region.size)));
    }
    return {};
  }
  vfio_iommu_type1_dma_map map{};
  map.argsz = sizeof(map);
  if (access & dma_read) map.flags |= VFIO_DMA_MAP_FLAG_READ;
  if (access & dma_write) map.flags |= VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = reinterpret_cast<std::uintptr_t>(region.vaddr);
  map.iova = region.iova;
  map.size = region.size;
  if (::ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &map) != 0) {
    const int err = errno;
    return std::unexpected(
        make_error(err, "VFIO_IOMMU_MAP_DMA", fmt::format("mode {} {}", mode_name(), range_text(region.iova, region.size))));
  }
  return {};
}

Result<std::uint64_t> Iommu::unmap_in_kernel(std::uint64_t iova, std::uint64_t size) {
  if (mode_ == IommuMode::iommufd) {
    iommu_ioas_unmap unmap{};
    unmap.size = sizeof(unmap);
    unmap.ioas_id = ioas_id_;
    unmap.iova = iova;
    unmap.length = size;
    if (::ioctl(iommufd_.get(), IOMMU_IOAS_UNMAP, &unmap) != 0) {
      const int err = errno;
      return std::unexpected(make_error(err, "IOMMU_IOAS_UNMAP", range_text(iova, size)));
    }
    return unmap.length;
  }
  vfio_iommu_type1_dma_unmap unmap{};
  unmap.argsz = sizeof(unmap);
  unmap.iova = iova;
  unmap.size = size;
  if (::ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) {
    const int err = errno;
    return std::unexpected(
        make_error(err, "VFIO_IOMMU_UNMAP_DMA", fmt::format("mode {} {}", mode_name(), range_text(iova, size))));
  }
  return unmap.size;
}

Result<std::uint64_t> Iommu::unmap_all_in_kernel() {
  if (mode_ == IommuMode::iommufd) return unmap_in_kernel(0, UINT64_MAX);  // iommufd's "everything"
  vfio_iommu_type1_dma_unmap unmap{};
  unmap.argsz = sizeof(unmap);
  unmap.flags = VFIO_DMA_UNMAP_FLAG_ALL;
  if (::ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "VFIO_IOMMU_UNMAP_DMA(ALL)", fmt::format("mode {}", mode_name())));
  }
  return unmap.size;
}

Result<std::vector<IovaRange>> Iommu::kernel_iova_ranges() const {
  std::vector<IovaRange> ranges;
  if (mode_ == IommuMode::iommufd) {
    iommu_ioas_iova_ranges query{};
    query.size = sizeof(query);
    query.ioas_id = ioas_id_;
    // The first call with no room reports the count (EMSGSIZE); the ranges
    // can change in between as devices attach, so loop.
    std::vector<iommu_iova_range> raw;
    for (int attempt = 0; attempt < 8; ++attempt) {
      query.num_iovas = static_cast<std::uint32_t>(raw.size());
      query.allowed_iovas = reinterpret_cast<std::uintptr_t>(raw.data());
      if (::ioctl(iommufd_.get(), IOMMU_IOAS_IOVA_RANGES, &query) == 0) {
        raw.resize(query.num_iovas);
        for (const auto& r : raw) ranges.push_back({r.start, r.last});
        return ranges;
      }
      const int err = errno;
      if (err != EMSGSIZE) return std::unexpected(make_error(err, "IOMMU_IOAS_IOVA_RANGES", "mode iommufd"));
      raw.resize(query.num_iovas);
    }
    return std::unexpected(make_error(EAGAIN, "IOMMU_IOAS_IOVA_RANGES", "count kept changing"));
  }

  if (!iommu_type_set_) {
    return std::unexpected(
        make_error(EINVAL, "VFIO_IOMMU_GET_INFO", "no device attached yet: the container has no IOMMU type"));
  }
  std::vector<std::byte> buffer(sizeof(vfio_iommu_type1_info));
  for (int attempt = 0; attempt < 4; ++attempt) {
    vfio_iommu_type1_info header{};
    header.argsz = static_cast<std::uint32_t>(buffer.size());
    std::memcpy(buffer.data(), &header, sizeof(header));
    if (::ioctl(container_.get(), VFIO_IOMMU_GET_INFO, buffer.data()) != 0) {
      const int err = errno;
      return std::unexpected(make_error(err, "VFIO_IOMMU_GET_INFO", fmt::format("mode {}", mode_name())));
    }
    std::memcpy(&header, buffer.data(), sizeof(header));
    if (header.argsz > buffer.size()) {  // the kernel wants room for its capabilities
      buffer.resize(header.argsz);
      continue;
    }
    if (!(header.flags & VFIO_IOMMU_INFO_CAPS) || header.cap_offset == 0) {
      return std::unexpected(unsupported_error(ENOTSUP, "VFIO_IOMMU_GET_INFO",
                                               fmt::format("mode {} reports no IOVA ranges", mode_name())));
    }
    auto caps = parse_info_capabilities(buffer, header.cap_offset);
    if (!caps) return std::unexpected(wrap_error(caps.error(), EPROTO, "VFIO_IOMMU_GET_INFO capabilities"));
    const InfoCapability* cap = find_info_capability(*caps, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
    if (cap == nullptr) {
      return std::unexpected(unsupported_error(ENOTSUP, "VFIO_IOMMU_GET_INFO",
                                               fmt::format("mode {} has no IOVA range capability", mode_name())));
    }
    auto spans = decode_iova_ranges(*cap);
    if (!spans) return std::unexpected(wrap_error(spans.error(), EPROTO, "VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE"));
    for (const auto& s : *spans) ranges.push_back({s.start, s.last});
    return ranges;
  }
  return std::unexpected(make_error(EAGAIN, "VFIO_IOMMU_GET_INFO", "argsz kept growing"));
}

Result<void> Iommu::map(const DmaRegion& region, std::uint32_t access) {
  VFIOLAB_TRY(map_in_kernel(region, access));
  std::lock_guard lock(mutex_);
  regions_.insert(region);
  return {};
}

Result<MappedBuffer> Iommu::map_new(IovaAllocator& iovas, Backing backing, std::uint64_t size) {
  VFIOLAB_ASSIGN_OR_RETURN(auto memory, DmaBuffer::allocate(backing, size));
  const std::uint64_t block = std::bit_ceil(memory.size());
  VFIOLAB_ASSIGN_OR_RETURN(const std::uint64_t iova, iovas.allocate(block));
  MappedBuffer buffer{std::move(memory), {}};
  buffer.region = {buffer.memory.data(), iova, buffer.memory.size()};
  if (auto mapped = map(buffer.region); !mapped) {
    iovas.give_back(iova, block);  // the next buffer may have it
    return std::unexpected(mapped.error());
  }
  return buffer;
}

Result<std::uint64_t> Iommu::unmap(std::uint64_t iova, std::uint64_t size) {
  VFIOLAB_ASSIGN_OR_RETURN(const std::uint64_t unmapped, unmap_in_kernel(iova, size));
  std::lock_guard lock(mutex_);
  regions_.erase_within(iova, size);
  return unmapped;
}

Result<std::uint64_t> Iommu::unmap_all() {
  VFIOLAB_ASSIGN_OR_RETURN(const std::uint64_t unmapped, unmap_all_in_kernel());
  std::lock_guard lock(mutex_);
  regions_.clear();
  return unmapped;
}

Result<std::vector<IovaRange>> Iommu::iova_ranges() const {
  VFIOLAB_ASSIGN_OR_RETURN(auto ranges, kernel_iova_ranges());
  auto normalized = normalize_iova_ranges(std::move(ranges));
  if (!normalized) return std::unexpected(wrap_error(normalized.error(), EPROTO, "IOVA ranges from the kernel"));
  return normalized;
}

Result<IovaAllocator> Iommu::iova_allocator(std::uint64_t limit) const {
  VFIOLAB_ASSIGN_OR_RETURN(auto ranges, iova_ranges());
  return IovaAllocator::create(std::move(ranges), limit);
}

Result<std::uint64_t> Iommu::to_iova(const void* vaddr) const {
  std::lock_guard lock(mutex_);
  auto iova = regions_.to_iova(vaddr);
  if (!iova) iova.error().operation = "Iommu::to_iova";
  return iova;
}

}  // namespace vfiolab
