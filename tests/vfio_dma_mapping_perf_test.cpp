// vfio_dma_mapping_perf_test: how long VFIO_IOMMU_MAP_DMA / IOMMU_IOAS_MAP
// and their unmaps take, in each IOMMU mode, for each backing, with and
// without the memory faulted in first, over sizes from 4 KiB to 1 GiB; and a
// BAR's mmap mapped where the mode allows it. Each measurement is taken
// twice in the same run, alternating: through the library (Iommu::map and
// unmap, with their region bookkeeping) and as the bare ioctl, so the
// library's cost shows as a ratio.
//
//   vfio_dma_mapping_perf_test [-m MODE]... [-b BACKING]... [-s SIZE]...
//       [--budget-ms N] [-n MAX_SAMPLES] [--quick] [--json FILE] [BDF]
//
// Each measurement repeats for --budget-ms (default 300) and at least 3
// times. --quick (the lab suite's choice) keeps 4 KiB-page backings to 64 MiB
// and measures for 50 ms.
//
// KTAP: one result per mode x backing (ok when every map and unmap
// succeeded), the table and ratios as diagnostics; JSON to FILE or to
// $VFIOLAB_OUT_DIR/vfio_dma_mapping_perf_test.json.
#include "perf_main.h"

#include "vfiolab/iommu.h"
#include "vfiolab/ktap.h"
#include "vfiolab/memory.h"
#include "vfiolab/pci_device.h"
#include "vfiolab/perf.h"
#include "vfiolab/text.h"

#include <fmt/format.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace vfiolab {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<IommuMode> modes;
  std::vector<Backing> backings;
  std::vector<std::uint64_t> sizes;
  std::chrono::milliseconds budget{300};
  int min_iterations = 3;
  int max_iterations = 200;
  std::string json;
  std::string bdf;
  // Sizes above this only with HugeTLB backings: faulting in and freeing
  // 1 GiB of 4 KiB pages takes most of a minute per mode under TCG.
  std::uint64_t small_page_limit = UINT64_MAX;
};

// The bare ioctls, exactly what Iommu::map/unmap issue.
int raw_map(const Iommu& iommu, const DmaRegion& r) {
  if (iommu.mode() == IommuMode::iommufd) {
    iommu_ioas_map map{};
    map.size = sizeof map;
    map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    map.ioas_id = iommu.ioas_id();
    map.user_va = reinterpret_cast<std::uintptr_t>(r.vaddr);
    map.length = r.size;
    map.iova = r.iova;
    return ::ioctl(iommu.iommufd(), IOMMU_IOAS_MAP, &map) ? errno : 0;
  }
  vfio_iommu_type1_dma_map map{};
  map.argsz = sizeof map;
  map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  map.vaddr = reinterpret_cast<std::uintptr_t>(r.vaddr);
  map.iova = r.iova;
  map.size = r.size;
  return ::ioctl(iommu.container_fd(), VFIO_IOMMU_MAP_DMA, &map) ? errno : 0;
}

int raw_unmap(const Iommu& iommu, const DmaRegion& r) {
  if (iommu.mode() == IommuMode::iommufd) {
    iommu_ioas_unmap unmap{};
    unmap.size = sizeof unmap;
    unmap.ioas_id = iommu.ioas_id();
    unmap.iova = r.iova;
    unmap.length = r.size;
    return ::ioctl(iommu.iommufd(), IOMMU_IOAS_UNMAP, &unmap) ? errno : 0;
  }
  vfio_iommu_type1_dma_unmap unmap{};
  unmap.argsz = sizeof unmap;
  unmap.iova = r.iova;
  unmap.size = r.size;
  return ::ioctl(iommu.container_fd(), VFIO_IOMMU_UNMAP_DMA, &unmap) ? errno : 0;
}

void touch_pages(const DmaBuffer& buffer, std::uint64_t size) {
  for (std::uint64_t at = 0; at < size; at += buffer.page_size()) buffer.bytes()[at] = std::byte{1};
}

struct Samples {
  std::vector<double> map, unmap;
};

// Pages of `buffer` in memory now (mincore), counted in the system's page
// size; a HugeTLB page counts as all of its small pages. nullopt when
// mincore cannot tell.
std::optional<std::size_t> resident_pages(const DmaBuffer& buffer) {
  const std::size_t page = static_cast<std::size_t>(::getpagesize());
  std::vector<unsigned char> vector((buffer.size() + page - 1) / page);
  if (::mincore(buffer.data(), buffer.size(), vector.data()) != 0) return std::nullopt;
  return static_cast<std::size_t>(std::count_if(vector.begin(), vector.end(), [](unsigned char v) { return v & 1; }));
}

class Run {
 public:
  Run(Options options, ktap::Writer& out) : o_(std::move(options)), out_(out) {}

  // One KTAP result per mode and backing.
  bool mode(IommuMode mode) {
    const std::string name(iommu_mode_info(mode).name);
    auto iommu = Iommu::open(mode);
    if (!iommu) return not_run(name, iommu.error());
    auto device = PciDevice::open(o_.bdf, *iommu);
    if (!device) return not_run(name, device.error());
    auto allocator = (*iommu)->iova_allocator();
    if (!allocator) return not_run(name, allocator.error());
    bool ok = true;
    for (Backing backing : o_.backings) ok &= this->backing(**iommu, *allocator, backing);
    ok &= bar(**iommu, **device, *allocator);
    return ok;
  }

  perf::Report report;

 private:
  // Every result line of a mode that could not be set up.
  bool not_run(const std::string& mode, const Error& error) {
    bool ok = true;
    for (Backing backing : o_.backings) ok &= skip_or_fail(fmt::format("{}.{}", mode, backing_info(backing).name), error);
    return skip_or_fail(mode + ".bar0", error) && ok;
  }

  bool skip_or_fail(const std::string& name, const Error& error) {
    if (error.unsupported) {
      out_.skip(name, error.message());
      return true;
    }
    out_.fail(name, error.message());
    return false;
  }

  bool backing(Iommu& iommu, IovaAllocator& allocator, Backing backing) {
    const BackingInfo& info = backing_info(backing);
    const std::string name = fmt::format("{}.{}", iommu.mode_name(), info.name);
    // HugeTLB sizes are bounded by the pool.
    const std::uint64_t capacity = info.hugetlb ? free_hugepages(info.page_size) * info.page_size : UINT64_MAX;
    std::vector<std::uint64_t> sizes;
    for (auto size : o_.sizes) {
      if (size % info.page_size) continue;
      if (!info.hugetlb && size > o_.small_page_limit) continue;
      if (size > capacity) {
        out_.diagnostic(fmt::format("{}: {} left out: the pool has {} free", name, perf::size_name(size),
                                    perf::size_name(capacity)));
        continue;
      }
      sizes.push_back(size);
    }
    if (sizes.empty()) {
      out_.skip(name, fmt::format("no size fits: sizes must be multiples of {} and at most {} (free HugeTLB pool)",
                                  perf::size_name(info.page_size), perf::size_name(capacity)));
      return true;
    }
    const std::uint64_t largest = *std::max_element(sizes.begin(), sizes.end());
    auto iova = allocator.allocate(std::bit_ceil(largest));
    if (!iova) {
      out_.fail(name, "no IOVA for " + perf::size_name(largest) + ": " + iova.error().message());
      return false;
    }
    std::string failure;
    // Without pre-faulting, each map gets memory never touched (a fresh
    // mapping), so the kernel faults it in while pinning. With it, one
    // buffer is touched all over before each map.
    std::optional<DmaBuffer> touched;
    for (bool prefault : {false, true}) {
      if (prefault) {
        auto buffer = DmaBuffer::allocate(backing, largest);
        if (!buffer) return skip_or_fail(name, buffer.error());
        touched.emplace(std::move(*buffer));
      }
      for (auto size : sizes) {
        Samples library, raw;
        const auto start = Clock::now();
        for (int i = 0; i < o_.max_iterations && failure.empty(); ++i) {
          if (i >= o_.min_iterations && Clock::now() - start > o_.budget) break;
          // Alternate which goes first, so drift hits both alike.
          for (bool use_library : {i % 2 == 0, i % 2 != 0}) {
            std::optional<DmaBuffer> fresh;
            if (prefault) {
              touch_pages(*touched, size);
            } else {
              auto buffer = DmaBuffer::allocate(backing, size, Prefault::no);
              if (!buffer) {
                failure = buffer.error().message();
                break;
              }
              // The row's premise: the map, not the allocation, faults the
              // memory in. A resident page here would time a prefaulted map.
              if (const auto resident = resident_pages(*buffer); resident != 0u) {
                failure = fmt::format("a prefault=no buffer of {} had {} page(s) resident before its map",
                                      perf::size_name(size),
                                      resident ? std::to_string(*resident) : "unknown (mincore failed)");
                break;
              }
              fresh.emplace(std::move(*buffer));
            }
            const DmaRegion region{prefault ? touched->data() : fresh->data(), *iova, size};
            if (!measure(iommu, region, use_library, use_library ? library : raw, failure)) break;
          }
        }
        if (!failure.empty()) break;
        add(iommu, info, size, prefault, "library", library);
        add(iommu, info, size, prefault, "raw", raw);
      }
      if (!failure.empty()) break;
    }
    if (!failure.empty()) {
      out_.fail(name, failure);
      return false;
    }
    out_.pass(name);
    return true;
  }

  bool measure(Iommu& iommu, const DmaRegion& region, bool use_library, Samples& samples, std::string& failure) {
    auto t0 = Clock::now();
    if (use_library) {
      if (auto mapped = iommu.map(region); !mapped) {
        failure = mapped.error().message();
        return false;
      }
    } else if (int err = raw_map(iommu, region)) {
      failure = fmt::format("raw map of {}: {}", perf::size_name(region.size), strerrorname_np(err));
      return false;
    }
    auto t1 = Clock::now();
    if (use_library) {
      auto unmapped = iommu.unmap(region);
      if (!unmapped) {
        failure = unmapped.error().message();
      } else if (*unmapped != region.size) {
        failure = "unmap returned a short size";
      }
    } else if (int err = raw_unmap(iommu, region)) {
      failure = fmt::format("raw unmap of {}: {}", perf::size_name(region.size), strerrorname_np(err));
    }
    auto t2 = Clock::now();
    if (!failure.empty()) return false;
    samples.map.push_back(perf::micros(t1 - t0));
    samples.unmap.push_back(perf::micros(t2 - t1));
    return true;
  }

  void add(const Iommu& iommu, const BackingInfo& info, std::uint64_t size, bool prefault, const char* api,
           const Samples& samples) {
    const std::map<std::string, std::string> labels{{"api", api}, {"prefault", prefault ? "yes" : "no"}};
    for (auto [test, values] : {std::pair{"map", &samples.map}, {"unmap", &samples.unmap}}) {
      report.records.push_back({test, std::string(iommu.mode_name()), std::string(info.name), size,
                                perf::summarize(*values), "us", labels});
    }
    // Throughput of the map, per sample.
    std::vector<double> rate;
    for (double us : samples.map) rate.push_back(static_cast<double>(size) / (1 << 20) / (us / 1e6));
    report.records.push_back({"map_throughput", std::string(iommu.mode_name()), std::string(info.name), size,
                              perf::summarize(rate), "MiB/s", labels});
  }

  // BAR0's mmap mapped for peer-to-peer DMA: type1 takes it; iommufd and
  // its compatibility modes refuse a VM_PFNMAP mapping.
  bool bar(Iommu& iommu, PciDevice& device, IovaAllocator& allocator) {
    const std::string name = fmt::format("{}.bar0", iommu.mode_name());
    const Bar& bar0 = device.bar(0);
    if (!bar0.address()) {
      out_.skip(name, "BAR0 is not mmap-able");
      return true;
    }
    auto iova = allocator.allocate(std::bit_ceil(bar0.info.size));
    if (!iova) {
      out_.fail(name, "no IOVA: " + iova.error().message());
      return false;
    }
    const DmaRegion region{bar0.address(), *iova, bar0.info.size};
    if (int err = raw_map(iommu, region)) {
      // iommufd and its compatibility modes refuse VM_PFNMAP memory (EFAULT);
      // type1 must map it.
      const bool type1 = iommu.mode() == IommuMode::vfio_type1_iommu || iommu.mode() == IommuMode::vfio_type1v2_iommu;
      if (type1 || err != EFAULT) {
        out_.fail(name, fmt::format("mapping BAR0's mmap failed: {}", strerrorname_np(err)));
        return false;
      }
      out_.skip(name, "this mode does not map a BAR's mmap (EFAULT)");
      return true;
    }
    raw_unmap(iommu, region);
    Samples library, raw;
    std::string failure;
    const auto start = Clock::now();
    for (int i = 0; i < o_.max_iterations && failure.empty(); ++i) {
      if (i >= o_.min_iterations && Clock::now() - start > o_.budget) break;
      for (bool use_library : {i % 2 == 0, i % 2 != 0}) {
        if (!measure(iommu, region, use_library, use_library ? library : raw, failure)) break;
      }
    }
    if (!failure.empty()) {
      out_.fail(name, failure);
      return false;
    }
    static const BackingInfo kBar{Backing::anonymous, "bar0", 4096, false, false};
    add(iommu, kBar, region.size, true, "library", library);
    add(iommu, kBar, region.size, true, "raw", raw);
    out_.pass(name);
    return true;
  }

  Options o_;
  ktap::Writer& out_;
};

// Library median over raw median, per mode, backing, size and prefault.
void print_ratios(const perf::Report& report, ktap::Writer& out) {
  out.diagnostic("library / raw (median map+unmap time; 1.00 = no cost):");
  std::map<std::string, std::pair<double, double>> sums;  // key -> {library, raw}
  std::vector<std::string> order;
  for (const auto& r : report.records) {
    if (r.test != "map" && r.test != "unmap") continue;
    const std::string key = fmt::format("{:<24} {:<22} {:>5} prefault={:<3}", r.mode, r.backing,
                                        perf::size_name(r.size), r.labels.at("prefault"));
    if (!sums.contains(key)) order.push_back(key);
    auto& [library, raw] = sums[key];
    (r.labels.at("api") == "library" ? library : raw) += r.stats.median;
  }
  double worst = 0;
  for (const auto& key : order) {
    const auto [library, raw] = sums[key];
    const double ratio = raw > 0 ? library / raw : 0;
    worst = std::max(worst, ratio);
    out.diagnostic(fmt::format("  {} {:.3f}", key, ratio));
  }
  out.diagnostic(fmt::format("largest library/raw ratio: {:.3f}", worst));
}

int main_(int argc, char** argv) {
  Options o;
  auto own = [&](std::string_view arg, const perf_main::OptionValue& value) -> Result<bool> {
    if (arg == "--quick") {
      o.small_page_limit = 64 << 20;
      o.budget = std::chrono::milliseconds(50);
      return true;
    }
    if (arg != "-b" && arg != "-s" && arg != "--budget-ms") return false;
    VFIOLAB_ASSIGN_OR_RETURN(const std::string_view given, value());
    if (arg == "-b") {
      VFIOLAB_ASSIGN_OR_RETURN(const Backing backing, backing_from_name(given));
      o.backings.push_back(backing);
    } else if (arg == "-s") {
      const auto size = perf::parse_size(given);
      if (!size || *size % 4096) return std::unexpected(make_error(0, "-s needs a size in 4K steps (4K, 2M, 1G)"));
      o.sizes.push_back(*size);
    } else {
      VFIOLAB_ASSIGN_OR_RETURN(const unsigned long ms, text::positive_number(arg, given, "milliseconds"));
      o.budget = std::chrono::milliseconds(ms);
    }
    return true;
  };
  const auto parsed = perf_main::parse(argc, argv, own);
  constexpr std::string_view own_usage = "[-b BACKING]... [-s SIZE]... [--budget-ms N] [--quick] ";
  if (auto code = perf_main::exit_before_running(parsed, argv[0], own_usage)) return *code;
  const perf_main::CommonOptions& common = *parsed;
  if (common.bdfs.size() != 1) {
    fmt::print(stderr, "{}: one BDF, not {}\n", argv[0], common.bdfs.size());
    return perf_main::kExitFail;
  }
  o.bdf = common.bdfs.front();
  o.modes = common.modes;
  o.json = common.json;
  if (common.iterations) o.max_iterations = std::max(common.iterations, o.min_iterations);
  if (o.backings.empty()) {
    o.backings = {Backing::anonymous, Backing::anonymous_hugetlb_2mb, Backing::anonymous_hugetlb_1gb, Backing::memfd};
  }
  if (o.sizes.empty()) o.sizes = {4096, 64 << 10, 2 << 20, 64 << 20, 1 << 30};

  ktap::Writer out;
  out.header();
  out.plan(static_cast<int>(o.modes.size() * (o.backings.size() + 1)));
  Run run(o, out);
  run.report = {"vfio_dma_mapping_perf_test", o.bdf, perf::kernel_release(), {}};
  bool ok = true;
  for (IommuMode mode : o.modes) ok &= run.mode(mode);
  ok &= perf_main::finish(run.report, o.json, out);
  print_ratios(run.report, out);
  return perf_main::end(ok, out);
}

}  // namespace
}  // namespace vfiolab

int main(int argc, char** argv) { return vfiolab::main_(argc, argv); }
