// Host-side hot paths under Google Benchmark: handing out IOVAs, and finding
// the IOVA of a host address among 1, 1k and 100k mapped regions.
//
//   vfiolab-bench [--benchmark_filter=...] [--benchmark_min_time=0.1]
#include "vfiolab/iova_allocator.h"
#include "vfiolab/region_table.h"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

namespace vfiolab {
namespace {

// 4 KiB blocks from a 39-bit space (the lab's Intel IOMMU), minus the MSI
// window, as the kernel reports it.
void BM_IovaAllocate(benchmark::State& state) {
  const std::uint64_t size = static_cast<std::uint64_t>(state.range(0));
  auto allocator = IovaAllocator::create({{0, 0xfedfffff}, {0xfef00000, (1ull << 39) - 1}}).value();
  for (auto _ : state) {
    auto iova = allocator.allocate(size);
    if (!iova) {
      state.PauseTiming();
      allocator.reset();
      state.ResumeTiming();
      continue;
    }
    benchmark::DoNotOptimize(*iova);
  }
}
BENCHMARK(BM_IovaAllocate)->Arg(4096)->Arg(2 << 20)->Arg(1 << 30);

// Regions of 2 MiB at scattered host addresses; lookups of random addresses
// inside them.
void BM_RegionLookup(benchmark::State& state) {
  const auto count = static_cast<std::uint64_t>(state.range(0));
  constexpr std::uint64_t kRegion = 2 << 20;
  RegionTable table;
  std::vector<std::uintptr_t> starts;
  std::mt19937_64 rng(42);
  for (std::uint64_t i = 0; i < count; ++i) {
    // Every other slot, so there are holes between regions.
    const std::uintptr_t start = 0x7f0000000000 + 2 * i * kRegion;
    table.insert({reinterpret_cast<void*>(start), i * kRegion, kRegion});
    starts.push_back(start);
  }
  std::vector<const void*> probes(4096);
  for (auto& probe : probes) probe = reinterpret_cast<const void*>(starts[rng() % count] + rng() % kRegion);
  std::size_t next = 0;
  for (auto _ : state) {
    auto iova = table.to_iova(probes[next++ % probes.size()]);
    benchmark::DoNotOptimize(iova);
  }
  state.counters["regions"] = static_cast<double>(table.size());
}
BENCHMARK(BM_RegionLookup)->Arg(1)->Arg(1000)->Arg(100000);

}  // namespace
}  // namespace vfiolab

BENCHMARK_MAIN();
