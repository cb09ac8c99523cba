// vfio_pci_driver_perf_test: through each device's vfiolab driver, per
// IOMMU mode, the copy bandwidth (the driver's largest copy, its largest
// count per start) and the MSI round trip: the driver makes the device send
// its MSI, the test wakes on the vector's eventfd.
//
//   vfio_pci_driver_perf_test [-m MODE]... [-n ITERATIONS] [--json FILE] BDF...
#include "driver_options.h"
#include "perf_main.h"
#include "scope_exit.h"

#include "vfiolab/drivers.h"
#include "vfiolab/memory.h"
#include "vfiolab/pci_device.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>

namespace vfiolab {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint64_t kBufferSize = 2 << 20;
constexpr auto kCopyBudget = 1s;

// One device in one mode; an empty string when all went well, else why not.
std::string measure(IommuMode mode, const std::string& bdf, int iterations, perf::Report& report, bool& skipped) {
  auto fail = [&](const Error& e) {
    skipped = e.unsupported;
    return e.message();
  };
  auto iommu = Iommu::open(mode);
  if (!iommu) return fail(iommu.error());
  auto device = PciDevice::open(bdf, *iommu);
  if (!device) return fail(device.error());
  auto driver = probe_driver(**device, driver_options_from_environment(**device));
  if (!driver) return fail(driver.error());
  Driver& d = **driver;
  auto iovas = (*iommu)->iova_allocator(d.iova_limit());
  if (!iovas) return fail(iovas.error());
  std::vector<MappedBuffer> buffers;  // the driver's region, the source, the destination
  for (std::uint64_t size : {d.region_size(), kBufferSize, kBufferSize}) {
    auto buffer = (*iommu)->map_new(*iovas, Backing::anonymous, size);
    if (!buffer) return fail(buffer.error());
    buffers.push_back(std::move(*buffer));
  }
  if (auto init = d.init(buffers[0].region); !init) return fail(init.error());
  // Stopped before the buffers it uses go, however this function returns
  // (its error is dropped: the measurement is taken, the device is closed next).
  auto stop_driver = ScopeExit([&d] { (void)d.remove(); });
  const std::string mode_name(iommu_mode_info(mode).name);
  const std::map<std::string, std::string> labels{{"driver", std::string(d.name())}, {"device", bdf}};

  // Bandwidth: starts of the largest copy, max count each, for a while.
  const std::uint64_t size = std::min(d.max_memcpy_size(), kBufferSize);
  std::memset(buffers[1].memory.data(), 0x3c, size);
  std::vector<double> rates;
  const auto start = Clock::now();
  while (rates.empty() || Clock::now() - start < kCopyBudget) {
    const auto t0 = Clock::now();
    if (auto r = d.memcpy_start(buffers[1].region.iova, buffers[2].region.iova, size, d.max_memcpy_count()); !r) return r.error().message();
    if (auto r = d.memcpy_wait(60s); !r) return r.error().message();
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    rates.push_back(static_cast<double>(size * d.max_memcpy_count()) / seconds / (1 << 20));
  }
  if (std::memcmp(buffers[1].memory.data(), buffers[2].memory.data(), size) != 0) return "the copies' destination differs from the source";
  auto copy_labels = labels;
  copy_labels["count"] = std::to_string(d.max_memcpy_count());
  report.records.push_back({"memcpy_bandwidth", mode_name, "anonymous", size, perf::summarize(rates), "MiB/s", copy_labels});

  // MSI round trip.
  if (d.msi_vector()) {
    EventFd& eventfd = d.device().irq_eventfd(*d.msi_vector());
    (void)eventfd.read();
    std::vector<double> trips;
    for (int i = 0; i < iterations; ++i) {
      const auto t0 = Clock::now();
      if (auto r = d.send_msi(); !r) return r.error().message();
      auto fired = eventfd.wait(2000ms);
      if (!fired) return fired.error().message();
      if (!fired->has_value()) return fmt::format("MSI {} of {} never arrived", i + 1, iterations);
      trips.push_back(perf::micros(Clock::now() - t0));
    }
    report.records.push_back({"msi_round_trip", mode_name, "", 0, perf::summarize(trips), "us", labels});
  }
  return {};
}

int main_(int argc, char** argv) {
  const auto parsed = perf_main::parse(argc, argv);
  if (auto code = perf_main::exit_before_running(parsed, argv[0], "")) return *code;
  const perf_main::CommonOptions& o = *parsed;
  const int iterations = o.iterations ? o.iterations : 200;
  ktap::Writer out;
  out.header();
  out.plan(static_cast<int>(o.modes.size() * o.bdfs.size()));
  perf::Report report{"vfio_pci_driver_perf_test", perf_main::join(o.bdfs), perf::kernel_release(), {}};
  bool ok = true;
  for (const auto& bdf : o.bdfs) {
    for (IommuMode mode : o.modes) {
      const std::string name = fmt::format("{}.{}", bdf, iommu_mode_info(mode).name);
      bool skipped = false;
      const std::string failure = measure(mode, bdf, iterations, report, skipped);
      if (failure.empty()) {
        out.pass(name);
      } else if (skipped) {
        out.skip(name, failure);
      } else {
        out.fail(name, failure);
        ok = false;
      }
    }
  }
  ok &= perf_main::finish(report, o.json, out);
  return perf_main::end(ok, out);
}

}  // namespace
}  // namespace vfiolab

int main(int argc, char** argv) { return vfiolab::main_(argc, argv); }
