// vfio_pci_device_init_perf_test: the devices named are opened at once, one
// thread each, sharing one Iommu (group attach or cdev bind and IOAS attach,
// device info, BAR mmaps), and closed again, -n times per IOMMU mode.
// Reports each open's time (min, max, mean and percentiles) and the wall
// time of the whole parallel open.
//
//   vfio_pci_device_init_perf_test [-m MODE]... [-n ROUNDS] [--json FILE] BDF...
#include "perf_main.h"

#include "vfiolab/pci_device.h"

#include <chrono>
#include <numeric>
#include <thread>

namespace vfiolab {
namespace {

using Clock = std::chrono::steady_clock;

int main_(int argc, char** argv) {
  const auto parsed = perf_main::parse(argc, argv);
  if (auto code = perf_main::exit_before_running(parsed, argv[0], "")) return *code;
  const perf_main::CommonOptions& o = *parsed;
  const int rounds = o.iterations ? o.iterations : 10;

  ktap::Writer out;
  out.header();
  out.plan(static_cast<int>(o.modes.size()));
  perf::Report report{"vfio_pci_device_init_perf_test", perf_main::join(o.bdfs), perf::kernel_release(), {}};
  bool ok = true;
  for (IommuMode mode : o.modes) {
    const std::string name(iommu_mode_info(mode).name);
    std::vector<double> opens, walls;
    std::string failure;
    bool skipped = false;
    for (int round = 0; round < rounds && failure.empty() && !skipped; ++round) {
      auto iommu = Iommu::open(mode);
      if (!iommu) {
        skipped = iommu.error().unsupported;
        failure = iommu.error().message();
        break;
      }
      std::vector<Result<std::unique_ptr<PciDevice>>> devices(o.bdfs.size());
      std::vector<double> times(o.bdfs.size());
      std::vector<std::thread> threads;
      const auto start = Clock::now();
      for (std::size_t i = 0; i < o.bdfs.size(); ++i) {
        threads.emplace_back([&, i] {
          const auto t0 = Clock::now();
          devices[i] = PciDevice::open(o.bdfs[i], *iommu);
          times[i] = perf::micros(Clock::now() - t0);
        });
      }
      for (auto& t : threads) t.join();
      walls.push_back(perf::micros(Clock::now() - start));
      for (std::size_t i = 0; i < devices.size(); ++i) {
        if (!devices[i]) {
          skipped = devices[i].error().unsupported;
          failure = devices[i].error().message();
          break;
        }
        opens.push_back(times[i]);
      }
    }
    if (skipped) {
      out.skip(name, failure);
      continue;
    }
    if (!failure.empty()) {
      out.fail(name, failure);
      ok = false;
      continue;
    }
    const perf::Summary each = perf::summarize(opens);
    const double mean = std::accumulate(opens.begin(), opens.end(), 0.0) / static_cast<double>(opens.size());
    const std::map<std::string, std::string> labels{{"devices", std::to_string(o.bdfs.size())}};
    report.records.push_back({"device_open", name, "", 0, each, "us", labels});
    report.records.push_back({"parallel_open_wall", name, "", 0, perf::summarize(walls), "us", labels});
    out.diagnostic(fmt::format("{}: {} devices x {} rounds: open min {:.0f} us, mean {:.0f} us, max {:.0f} us; "
                               "wall median {:.0f} us",
                               name, o.bdfs.size(), rounds, each.min, mean, each.max,
                               report.records.back().stats.median));
    out.pass(name);
  }
  ok &= perf_main::finish(report, o.json, out);
  return perf_main::end(ok, out);
}

}  // namespace
}  // namespace vfiolab

int main(int argc, char** argv) { return vfiolab::main_(argc, argv); }
