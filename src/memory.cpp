#include "vfiolab/memory.h"

#include <fmt/format.h>
#include <asm-generic/hugetlb_encode.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <fstream>

namespace vfiolab {
namespace {

constexpr std::size_t k4K = 4096;
constexpr std::size_t k2M = 2ul << 20;
constexpr std::size_t k1G = 1ul << 30;

constexpr std::array kBackings{
    BackingInfo{Backing::anonymous, "anonymous", k4K, false, false},
    BackingInfo{Backing::anonymous_hugetlb_2mb, "anonymous_hugetlb_2mb", k2M, true, false},
    BackingInfo{Backing::anonymous_hugetlb_1gb, "anonymous_hugetlb_1gb", k1G, true, false},
    BackingInfo{Backing::memfd, "memfd", k4K, false, true},
    BackingInfo{Backing::memfd_hugetlb_2mb, "memfd_hugetlb_2mb", k2M, true, true},
    BackingInfo{Backing::memfd_hugetlb_1gb, "memfd_hugetlb_1gb", k1G, true, true},
};

// The page-size encoding that mmap(MAP_HUGETLB) and memfd_create(MFD_HUGETLB)
// share.
int huge_flag(std::size_t page_size) {
  return page_size == k1G ? HUGETLB_FLAG_ENCODE_1GB : HUGETLB_FLAG_ENCODE_2MB;
}

}  // namespace

std::span<const BackingInfo> all_backings() { return kBackings; }

const BackingInfo& backing_info(Backing backing) {
  for (const auto& info : kBackings) {
    if (info.backing == backing) return info;
  }
  return kBackings[0];
}

Result<Backing> backing_from_name(std::string_view name) {
  std::string names;
  for (const auto& info : kBackings) {
    if (info.name == name) return info.backing;
    names += (names.empty() ? "" : ", ") + std::string(info.name);
  }
  return std::unexpected(make_error(EINVAL, "backing_from_name", fmt::format("unknown backing '{}'; known: {}", name, names)));
}

std::size_t free_hugepages(std::size_t page_size) {
  std::ifstream in(fmt::format("/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages", page_size / 1024));
  std::size_t pages = 0;
  if (!(in >> pages)) return 0;
  return pages;
}

Result<DmaBuffer> DmaBuffer::allocate(Backing backing, std::size_t size, Prefault prefault) {
  const BackingInfo& info = backing_info(backing);
  std::size_t page = info.hugetlb ? info.page_size : static_cast<std::size_t>(::getpagesize());
  if (size == 0) return std::unexpected(make_error(EINVAL, "DmaBuffer::allocate", "size 0"));
  std::size_t rounded = (size + page - 1) / page * page;
  std::string what = fmt::format("{} bytes of {} memory", rounded, info.name);

  if (info.hugetlb) {
    std::size_t needed = rounded / page;
    std::size_t available = free_hugepages(page);
    if (available < needed) {
      return std::unexpected(unsupported_error(
          ENOMEM, "DmaBuffer::allocate",
          fmt::format("{}: {} free {} KiB hugepages, {} needed (reserve them: vfio-setup hugepages, or write "
                      "/sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages)",
                      what, available, page / 1024, needed, page / 1024)));
    }
  }

  UniqueFd memfd;
  int map_flags = MAP_SHARED;
  if (info.memfd) {
    unsigned memfd_flags = MFD_CLOEXEC;
    if (info.hugetlb) memfd_flags |= MFD_HUGETLB | static_cast<unsigned>(huge_flag(page));
    memfd.reset(::memfd_create("vfiolab-dma", memfd_flags));
    if (!memfd) {
      const int err = errno;
      Error error = make_error(err, "memfd_create", what);
      error.unsupported = err == ENOSYS || err == EINVAL;
      return std::unexpected(error);
    }
    if (::ftruncate(memfd.get(), static_cast<off_t>(rounded)) != 0) {
      const int err = errno;
      return std::unexpected(make_error(err, "ftruncate memfd", what));
    }
  } else {
    map_flags = MAP_PRIVATE | MAP_ANONYMOUS;
    if (info.hugetlb) map_flags |= MAP_HUGETLB | huge_flag(page);
  }

  void* address = ::mmap(nullptr, rounded, PROT_READ | PROT_WRITE, map_flags, memfd.get(), 0);
  if (address == MAP_FAILED) {
    const int err = errno;
    Error error = make_error(err, "mmap", what);
    error.unsupported = info.hugetlb && err == ENOMEM;
    return std::unexpected(error);
  }
  MemoryMapping mapping(address, rounded);
  // Fault every page in now, so DMA mapping measures pinning, not faulting,
  // and a short pool fails here with a clear error rather than SIGBUS later.
  if (prefault == Prefault::yes) {
    for (std::size_t offset = 0; offset < rounded; offset += page) mapping.bytes()[offset] = std::byte{0};
  }
  return DmaBuffer(backing, std::move(memfd), std::move(mapping));
}

}  // namespace vfiolab
