// vfio_pci_device_irq_test: a device's MSI or MSI-X vector routed into a KVM
// guest. The vector's eventfd is a KVM irqfd on a GSI whose MSI route names
// a guest vCPU and vector; the guest's IDT handler counts each arrival and
// stamps the TSC. Each interrupt is triggered through VFIO (a software
// trigger of the vector), or with -d sent by the device itself through its
// vfiolab driver, and must arrive exactly once at the vCPU the route named.
//
// Program options (beside the harness's):
//   -d              the device sends the interrupts (edu: MSI, nvme: MSI-X)
//   -n COUNT        interrupts to send (default 100)
//   -c VCPUS        vCPUs; the route moves round-robin among them (default 2)
//   --spin          vCPUs wait in a PAUSE loop instead of HLT
//   --xapic         the guest's APICs in xAPIC mode instead of x2APIC
//   --nmi-every K   every K-th interrupt is routed as an NMI (default: none)
// Prints the delivered counts and the trigger-to-handler latency (min, mean,
// max), with guest and host on one TSC.
#include "device.h"
#include "driver_options.h"
#include "vfio_pci_device_irq.h"

#include "vfiolab/drivers.h"
#include "vfiolab/kvm/vm.h"

#include <fmt/format.h>
#include <x86intrin.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <thread>
#include <vector>

namespace vfiolab {
namespace {

using namespace kvm;
using namespace std::chrono_literals;
using device_irq::GuestState;
using ProgramOption = harness::ProgramOption;

const ProgramOption device_sends{"-d", ProgramOption::Kind::flag, nullptr,
                                 "the device sends the interrupts through its driver (default: VFIO triggers them)"};
const ProgramOption interrupt_count{"-n", ProgramOption::Kind::number, "COUNT", "interrupts to send (default 100)"};
const ProgramOption vcpu_count{"-c", ProgramOption::Kind::number, "VCPUS", "vCPUs, destinations in turn (default 2)"};
const ProgramOption spin{"--spin", ProgramOption::Kind::flag, nullptr, "vCPUs spin (PAUSE) instead of halting (HLT)"};
const ProgramOption xapic{"--xapic", ProgramOption::Kind::flag, nullptr, "xAPIC mode instead of x2APIC"};
const ProgramOption nmi_every{"--nmi-every", ProgramOption::Kind::number, "K", "every K-th interrupt as an NMI"};

constexpr auto kArrivalTimeout = 5s;
VFIOLAB_TEST_TIMEOUT(irq_timeout, "vfio_pci_device_irq_test", 300);

// TSC ticks per nanosecond, measured against the monotonic clock.
double tsc_ticks_per_ns() {
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t c0 = __rdtsc();
  std::this_thread::sleep_for(100ms);
  const std::uint64_t c1 = __rdtsc();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(c1 - c0) / static_cast<double>(ns);
}

// The vCPUs run guest_main in threads of their own until stopped: the stop
// flag, then a wake-up interrupt for those in HLT.
class GuestRunner {
 public:
  GuestRunner(Vm& vm, GuestState& state) : vm_(vm), state_(state) {}
  ~GuestRunner() { stop(); }
  Result<void> start() {
    results_.resize(vm_.vcpu_count());
    for (std::size_t i = 0; i < vm_.vcpu_count(); ++i) {
      if (auto r = vm_.vcpu(i).start(device_irq::guest_main, &state_); !r) return r;
      threads_.emplace_back([this, i] { results_[i] = vm_.vcpu(i).run_until_done(); });
    }
    return {};
  }
  // Errors of the vCPUs, after stop().
  std::vector<std::string> stop() {
    std::vector<std::string> errors;
    if (threads_.empty()) return errors;
    state_.stop = 1;
    for (std::size_t i = 0; i < vm_.vcpu_count(); ++i) {
      (void)vm_.signal_msi(x86::msi_message(vm_.vcpu(i).id(), device_irq::kWakeVector));
    }
    for (std::size_t i = 0; i < threads_.size(); ++i) {
      threads_[i].join();
      if (!results_[i]) errors.push_back(results_[i].error().message());
    }
    threads_.clear();
    return errors;
  }

 private:
  Vm& vm_;
  GuestState& state_;
  std::vector<std::thread> threads_;
  std::vector<Result<void>> results_;
};

class vfio_pci_device_irq_test : public testing::TestWithParam<IrqIndex> {
 protected:
  void SetUp() override {
    vcpus_ = static_cast<std::uint32_t>(vcpu_count.number_or(2));
    count_ = interrupt_count.number_or(100);
    nmi_every_ = nmi_every.number_or(0);
    ASSERT_GE(vcpus_, 1u);
    ASSERT_LE(vcpus_, device_irq::kMaxVcpus);

    VFIOLAB_ASSIGN_OR_SKIP(iommu, Iommu::open(harness::iommu_mode()));
    iommu_ = iommu;
    VFIOLAB_ASSIGN_OR_SKIP(device, PciDevice::open(harness::device_bdf(), iommu_));
    device_ = std::move(device);
    if (device_sends.given()) {
      set_up_driver();
      if (HasFatalFailure() || IsSkipped()) return;
    } else {
      const auto info = check(device_->irq_info(GetParam()));
      if (info.count == 0) GTEST_SKIP() << device_->name() << " has no " << irq_index_name(GetParam());
      VFIOLAB_ASSERT_OK(device_->enable_irqs(GetParam(), 1));
      vector_ = 0;
    }

    VFIOLAB_ASSIGN_OR_SKIP(vm, Vm::create({.vcpus = vcpus_}));
    vm_ = std::move(vm);
    state_ = vm_->arena().make<GuestState>();
    ASSERT_NE(state_, nullptr);
    state_->x2apic = !xapic.given();
    state_->halt = !spin.given();
    vm_->set_handler(device_irq::kDeviceVector, device_irq::device_interrupt_handler);
    vm_->set_handler(x86::kVectorNmi, device_irq::nmi_handler);
    vm_->set_handler(device_irq::kWakeVector, device_irq::wake_handler);
    // One clock for host and guest: the guest's TSC offset 0.
    for (std::size_t i = 0; i < vm_->vcpu_count(); ++i) {
      if (auto r = vm_->vcpu(i).set_tsc_offset(0); !r) {
        tsc_note_ = fmt::format("no latency figures: {}", r.error().message());
        break;
      }
    }
  }

  void TearDown() override {
    runner_.reset();
    vm_.reset();
    if (driver_) VFIOLAB_EXPECT_OK(driver_->remove());
  }

  void set_up_driver() {
    VFIOLAB_ASSIGN_OR_SKIP(driver, probe_driver(*device_, driver_options_from_environment(*device_)));
    driver_ = std::move(driver);
    auto iovas = check(iommu_->iova_allocator(driver_->iova_limit()));
    VFIOLAB_ASSIGN_OR_SKIP(ring, iommu_->map_new(iovas, Backing::anonymous, driver_->region_size()));
    ring_ = std::move(ring);
    if (auto init = driver_->init(ring_->region); !init) {
      if (init.error().unsupported) GTEST_SKIP() << init.error().message();
      FAIL() << init.error().message();
    }
    if (!driver_->msi_vector()) GTEST_SKIP() << "the " << driver_->name() << " driver cannot make the device send an MSI";
    if (device_->enabled_irq_index() != GetParam()) {
      GTEST_SKIP() << "the " << driver_->name() << " driver sends its interrupts on "
                   << irq_index_name(*device_->enabled_irq_index()) << ", not " << irq_index_name(GetParam());
    }
    vector_ = *driver_->msi_vector();
    // The driver's own set-up may have interrupted (nvme completes its admin
    // commands on this vector): those are not the test's.
    check(device_->irq_eventfd(vector_).read());
  }

  Result<void> trigger() {
    if (driver_) return driver_->send_msi();
    return device_->trigger_irq(GetParam(), vector_);
  }

  std::uint32_t vcpus_ = 0;
  std::uint64_t count_ = 0;
  std::uint64_t nmi_every_ = 0;
  std::shared_ptr<Iommu> iommu_;
  std::unique_ptr<PciDevice> device_;
  DriverHandle driver_;
  std::optional<MappedBuffer> ring_;
  std::uint32_t vector_ = 0;
  std::unique_ptr<Vm> vm_;
  GuestState* state_ = nullptr;
  std::unique_ptr<GuestRunner> runner_;
  std::string tsc_note_;
};

TEST_P(vfio_pci_device_irq_test, route_to_guest) {
  runner_ = std::make_unique<GuestRunner>(*vm_, *state_);
  check(runner_->start());
  const auto ready_deadline = std::chrono::steady_clock::now() + 10s;
  while (state_->ready < vcpus_ && std::chrono::steady_clock::now() < ready_deadline) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(state_->ready, vcpus_) << "not every vCPU came up";

  const std::uint32_t gsi = Vm::kFirstMsiGsi;
  auto message_for = [&](std::uint64_t i) {
    const bool nmi = nmi_every_ && i % nmi_every_ == nmi_every_ - 1;
    return x86::msi_message(static_cast<std::uint32_t>(i % vcpus_), nmi ? x86::kVectorNmi : device_irq::kDeviceVector,
                            nmi ? x86::DeliveryMode::nmi : x86::DeliveryMode::fixed);
  };
  EventFd& eventfd = device_->irq_eventfd(vector_);
  // Nothing may have fired since the set-up: every interrupt counted below
  // must be one this test caused.
  const auto before = check(eventfd.read());
  ASSERT_FALSE(before.has_value()) << "vector " << vector_ << " fired " << before.value_or(0)
                                   << " time(s) before the test sent anything";
  x86::MsiMessage route = message_for(0);
  check(vm_->set_msi_route(gsi, route));
  VFIOLAB_ASSERT_OK(vm_->assign_irqfd(gsi, eventfd.fd()));

  std::vector<std::uint64_t> expected_fixed(vcpus_), expected_nmi(vcpus_);
  std::vector<double> latencies_ns;
  const double ticks_per_ns = tsc_ticks_per_ns();
  for (std::uint64_t i = 0; i < count_; ++i) {
    const x86::MsiMessage message = message_for(i);
    if (message.address != route.address || message.data != route.data) {
      check(vm_->set_msi_route(gsi, message));
      route = message;
    }
    const std::uint32_t target = static_cast<std::uint32_t>(i % vcpus_);
    const bool nmi = (message.data >> 8 & 7) == static_cast<std::uint32_t>(x86::DeliveryMode::nmi);
    auto& arrivals = state_->arrivals[target];
    volatile std::uint64_t& counter = nmi ? arrivals.nmi : arrivals.fixed;
    const std::uint64_t before = counter;
    (nmi ? expected_nmi : expected_fixed)[target]++;

    const std::uint64_t sent_tsc = __rdtsc();
    check(trigger(), fmt::format("interrupt {}", i));
    const auto deadline = std::chrono::steady_clock::now() + kArrivalTimeout;
    while (counter == before && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_NE(counter, before) << "interrupt " << i << " (" << (nmi ? "NMI" : "fixed") << ") did not reach vCPU "
                               << target << " within " << kArrivalTimeout.count() << " s";
    if (tsc_note_.empty()) latencies_ns.push_back(static_cast<double>(arrivals.last_tsc - sent_tsc) / ticks_per_ns);
  }
  std::this_thread::sleep_for(50ms);  // for a duplicate to show up
  auto errors = runner_->stop();
  for (const auto& error : errors) ADD_FAILURE() << error;

  std::uint64_t fixed = 0, nmis = 0;
  for (std::uint32_t v = 0; v < vcpus_; ++v) {
    EXPECT_EQ(state_->arrivals[v].fixed, expected_fixed[v]) << "fixed interrupts at vCPU " << v;
    EXPECT_EQ(state_->arrivals[v].nmi, expected_nmi[v]) << "NMIs at vCPU " << v;
    fixed += state_->arrivals[v].fixed;
    nmis += state_->arrivals[v].nmi;
    fmt::print("# vCPU {}: {} fixed, {} NMI\n", v, state_->arrivals[v].fixed, state_->arrivals[v].nmi);
  }
  fmt::print("# delivered {} of {} ({} fixed, {} NMI) from {} vector {} to {} vCPU(s), {}, {}, triggered by {}\n",
             fixed + nmis, count_, fixed, nmis, irq_index_name(GetParam()), vector_, vcpus_,
             state_->halt ? "halted" : "spinning", state_->x2apic ? "x2APIC" : "xAPIC",
             driver_ ? fmt::format("the device ({} driver)", driver_->name()) : std::string("VFIO"));
  if (!latencies_ns.empty()) {
    const auto [min, max] = std::minmax_element(latencies_ns.begin(), latencies_ns.end());
    double sum = 0;
    for (double l : latencies_ns) sum += l;
    fmt::print("# latency trigger to guest handler: min {:.1f} us, mean {:.1f} us, max {:.1f} us ({} interrupts)\n",
               *min / 1000, sum / static_cast<double>(latencies_ns.size()) / 1000, *max / 1000, latencies_ns.size());
  } else if (!tsc_note_.empty()) {
    fmt::print("# {}\n", tsc_note_);
  }
  check(vm_->deassign_irqfd(gsi, eventfd.fd()));
}

INSTANTIATE_TEST_SUITE_P(vfio_pci_device_irq_test, vfio_pci_device_irq_test, testing::Values(IrqIndex::msi, IrqIndex::msix),
                         [](const testing::TestParamInfo<IrqIndex>& info) {
                           return info.param == IrqIndex::msi ? "msi" : "msix";
                         });

}  // namespace
}  // namespace vfiolab
