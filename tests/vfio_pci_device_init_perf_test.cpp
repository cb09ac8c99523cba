// vfio_pci_device_init_perf_test: the devices named are opened at once, one
// thread each, sharing one Iommu (group attach or cdev bind and IOAS attach,
// device info, BAR mmaps), and closed again, -n times per IOMMU mode.
// The threads wait at a barrier and are released together; each open's
// clock starts after its release. A mode fails when in some round a thread
// began its open before the last one reached the barrier. Whether the opens
// then ran together (each began before any had ended) is the last result,
// "opens_overlap", over every round of every mode: it SKIPs on a machine
// with fewer CPUs than devices, where the released threads must take turns.
// Reports each open's time (min, max, mean and percentiles), the spread of
// the start times and the wall time of the whole parallel open.
//
//   vfio_pci_device_init_perf_test [-m MODE]... [-n ROUNDS] [--json FILE] BDF...
#include "perf_main.h"

#include "vfiolab/pci_device.h"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <numeric>
#include <sched.h>
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
  out.plan(static_cast<int>(o.modes.size()) + 1);
  // The rounds in which a thread had not begun its open when another's had
  // ended, and how many rounds were judged.
  std::vector<std::string> apart;
  int judged = 0;
  perf::Report report{"vfio_pci_device_init_perf_test", perf_main::join(o.bdfs), perf::kernel_release(), {}};
  bool ok = true;
  for (IommuMode mode : o.modes) {
    const std::string name(iommu_mode_info(mode).name);
    std::vector<double> opens, walls, spreads;
    std::string failure;
    bool skipped = false;
    for (int round = 0; round < rounds && failure.empty() && !skipped; ++round) {
      auto iommu = Iommu::open(mode);
      if (!iommu) {
        skipped = iommu.error().unsupported;
        failure = iommu.error().message();
        break;
      }
      const std::size_t n = o.bdfs.size();
      std::vector<Result<std::unique_ptr<PciDevice>>> devices(n);
      std::vector<Clock::time_point> arrived(n), starts(n), ends(n);
      std::barrier gate(static_cast<std::ptrdiff_t>(n));
      std::vector<std::thread> threads;
      for (std::size_t i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
          arrived[i] = Clock::now();
          gate.arrive_and_wait();
          starts[i] = Clock::now();
          devices[i] = PciDevice::open(o.bdfs[i], *iommu);
          ends[i] = Clock::now();
        });
      }
      for (auto& t : threads) t.join();
      for (std::size_t i = 0; i < n && failure.empty(); ++i) {
        if (!devices[i]) {
          skipped = devices[i].error().unsupported;
          failure = devices[i].error().message();
        }
      }
      if (!failure.empty()) break;
      // The barrier released no thread before the last arrived.
      const auto last_arrival = *std::max_element(arrived.begin(), arrived.end());
      const auto first_start = *std::min_element(starts.begin(), starts.end());
      const auto last_start = *std::max_element(starts.begin(), starts.end());
      const auto first_end = *std::min_element(ends.begin(), ends.end());
      const auto last_end = *std::max_element(ends.begin(), ends.end());
      if (first_start < last_arrival) {
        failure = fmt::format("round {}: a thread began its open {:.0f} us before the last thread reached the barrier",
                              round + 1, perf::micros(last_arrival - first_start));
        break;
      }
      ++judged;
      if (last_start >= first_end) {
        apart.push_back(fmt::format("{} round {}: a thread began its open {:.0f} us after the first, {:.0f} us after "
                                    "another's open had ended",
                                    name, round + 1, perf::micros(last_start - first_start),
                                    perf::micros(last_start - first_end)));
      }
      for (std::size_t i = 0; i < n; ++i) opens.push_back(perf::micros(ends[i] - starts[i]));
      spreads.push_back(perf::micros(last_start - first_start));
      walls.push_back(perf::micros(last_end - first_start));
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
    const perf::Summary wall = perf::summarize(walls);
    const perf::Summary spread = perf::summarize(spreads);
    report.records.push_back({"parallel_open_wall", name, "", 0, wall, "us", labels});
    report.records.push_back({"parallel_open_start_spread", name, "", 0, spread, "us", labels});
    out.diagnostic(fmt::format("{}: {} devices x {} rounds, released together: open min {:.0f} us, mean {:.0f} us, "
                               "max {:.0f} us; wall median {:.0f} us; start spread median {:.0f} us, max {:.0f} us",
                               name, o.bdfs.size(), rounds, each.min, mean, each.max, wall.median, spread.median,
                               spread.max));
    out.pass(name);
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  const int cpus = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
  if (judged == 0) {
    out.skip("opens_overlap", "no round opened its devices");
  } else if (cpus < static_cast<int>(o.bdfs.size())) {
    out.diagnostic(fmt::format("opens_overlap: {} CPU(s) for {} threads; {} of {} rounds had a thread begin after "
                               "another's open had ended",
                               cpus, o.bdfs.size(), apart.size(), judged));
    // The same reason for any number of devices (the suite's and the fast
    // tier's entries share one expectation).
    out.skip("opens_overlap",
             fmt::format("{} CPU(s), fewer than the threads opening devices: the released threads cannot all run at once",
                         cpus));
  } else if (!apart.empty()) {
    for (const auto& line : apart) out.diagnostic(line);
    out.fail("opens_overlap", fmt::format("{} of {} rounds' opens did not overlap", apart.size(), judged));
    ok = false;
  } else {
    out.pass("opens_overlap");
  }
  ok &= perf_main::finish(report, o.json, out);
  return perf_main::end(ok, out);
}

}  // namespace
}  // namespace vfiolab

int main(int argc, char** argv) { return vfiolab::main_(argc, argv); }
