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
//   --seed N        seed of the random GSI and vector (random_gsi_vector,
//                   kvm_irqfd.eventfd_to_guest); printed by them for a replay
// Prints the delivered counts and the trigger-to-handler latency (min, mean,
// max), with guest and host on one TSC.
//
// Beside route_to_guest, the cases that keep interrupts flowing while
// something moves under them: the device's host IRQ moved among the host
// CPUs (host_irq_affinity), the vCPU threads moved (vcpu_migration), the
// routing table emptied and the route set again (empty_routing), a random
// GSI and vector (random_gsi_vector). kvm_irqfd's cases use no device (the
// program runs without a BDF; -f kvm_irqfd selects them): userspace writes
// the irqfd's eventfd, and they reach more than 16 vCPUs, some with x2APIC
// IDs above 255.
#include "device.h"
#include "driver_options.h"
#include "scope_exit.h"
#include "vfio_pci_device_irq.h"

#include "vfiolab/drivers.h"
#include "vfiolab/kvm/vm.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <x86intrin.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

namespace vfiolab {
namespace {

using namespace kvm;
using namespace std::chrono_literals;
using device_irq::GuestState;
using ProgramOption = harness::ProgramOption;
using harness::ScopeExit;

const ProgramOption device_sends{"-d", ProgramOption::Kind::flag, nullptr,
                                 "the device sends the interrupts through its driver (default: VFIO triggers them)"};
const ProgramOption interrupt_count{"-n", ProgramOption::Kind::number, "COUNT", "interrupts to send (default 100)"};
const ProgramOption vcpu_count{"-c", ProgramOption::Kind::number, "VCPUS", "vCPUs, destinations in turn (default 2)"};
const ProgramOption spin{"--spin", ProgramOption::Kind::flag, nullptr, "vCPUs spin (PAUSE) instead of halting (HLT)"};
const ProgramOption xapic{"--xapic", ProgramOption::Kind::flag, nullptr, "xAPIC mode instead of x2APIC"};
const ProgramOption nmi_every{"--nmi-every", ProgramOption::Kind::number, "K", "every K-th interrupt as an NMI"};
const ProgramOption seed_option{"--seed", ProgramOption::Kind::number, "N",
                                "seed of the random GSI and vector (default: a random one, printed)"};

VFIOLAB_NO_DEVICE_NEEDED();

constexpr auto kArrivalTimeout = 5s;
// Few interrupts where something moves under them: the lab's KVM runs
// nested under TCG.
constexpr std::uint64_t kMovingCount = 12;
VFIOLAB_TEST_TIMEOUT(irq_timeout, "vfio_pci_device_irq_test", 300);
VFIOLAB_TEST_TIMEOUT(irqfd_timeout, "kvm_irqfd", 300);

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
    tids_ = std::vector<std::atomic<pid_t>>(vm_.vcpu_count());
    for (std::size_t i = 0; i < vm_.vcpu_count(); ++i) {
      if (auto r = vm_.vcpu(i).start(device_irq::guest_main, &state_); !r) return r;
      threads_.emplace_back([this, i] {
        tids_[i] = static_cast<pid_t>(::syscall(SYS_gettid));
        results_[i] = vm_.vcpu(i).run_until_done();
      });
    }
    return {};
  }
  std::thread& thread(std::size_t index) { return threads_.at(index); }
  // The thread's id, once it runs (0 before).
  pid_t tid(std::size_t index) const { return tids_.at(index); }
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
  std::vector<std::atomic<pid_t>> tids_;
};

// The host CPUs this process may run on (sched_getaffinity).
std::vector<int> host_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// One line of /proc/interrupts: the IRQ number and its count on each CPU.
struct HostIrq {
  unsigned number = 0;
  std::vector<std::uint64_t> per_cpu;  // by column, which is by CPU number where all are online
  std::vector<int> cpus;               // the CPU of each column
};

// The line whose action (last column) is `name`, e.g. "vfio-msix[0](0000:00:04.0)".
std::optional<HostIrq> find_host_irq(const std::string& name) {
  std::ifstream file("/proc/interrupts");
  std::string line;
  if (!std::getline(file, line)) return std::nullopt;
  std::vector<int> cpus;
  {
    std::istringstream header(line);
    std::string column;
    while (header >> column) cpus.push_back(std::stoi(column.substr(3)));  // "CPUn"
  }
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    std::string first;
    fields >> first;
    if (first.empty() || first.back() != ':' || !std::isdigit(static_cast<unsigned char>(first[0]))) continue;
    std::vector<std::string> rest;
    for (std::string field; fields >> field;) rest.push_back(field);
    if (rest.empty() || rest.back() != name || rest.size() < cpus.size()) continue;
    HostIrq irq;
    irq.number = static_cast<unsigned>(std::stoul(first));
    irq.cpus = cpus;
    for (std::size_t i = 0; i < cpus.size(); ++i) irq.per_cpu.push_back(std::stoull(rest[i]));
    return irq;
  }
  return std::nullopt;
}

Result<void> write_text(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    return std::unexpected(make_error(err, "open", path));
  }
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    return std::unexpected(make_error(err, "write " + text, path));
  }
  return {};
}

std::string read_text(const std::string& path) {
  std::ifstream file(path);
  std::string text;
  std::getline(file, text);
  return text;
}

// The CPUs of a list like "0-2,5" (/proc/irq/N/effective_affinity_list).
std::vector<int> parse_cpu_list(const std::string& text) {
  std::vector<int> cpus;
  std::istringstream items(text);
  for (std::string item; std::getline(items, item, ',');) {
    if (item.empty() || !std::isdigit(static_cast<unsigned char>(item[0]))) continue;
    const auto dash = item.find('-');
    const int first = std::stoi(item.substr(0, dash));
    const int last = dash == std::string::npos ? first : std::stoi(item.substr(dash + 1));
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
  }
  return cpus;
}

// The CPU a thread last ran on: field 39 of /proc/self/task/TID/stat.
std::optional<int> last_cpu(pid_t tid) {
  std::ifstream file(fmt::format("/proc/self/task/{}/stat", tid));
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(paren + 2));  // from field 3 on
  std::string field;
  for (int n = 3; fields >> field; ++n) {
    if (n == 39) return std::stoi(field);
  }
  return std::nullopt;
}

std::uint64_t seed_for_run() {
  return seed_option.given() ? seed_option.number_or(1) : std::random_device{}();
}

// The guest that counts the interrupts: its VM, the state it shares with
// the host, and why there are no latency figures (empty when there are).
struct IrqGuest {
  std::unique_ptr<Vm> vm;
  GuestState* state = nullptr;
  std::string tsc_note;
};

Result<IrqGuest> make_irq_guest(const VmOptions& options, bool x2apic, bool halt) {
  IrqGuest guest;
  VFIOLAB_ASSIGN_OR_RETURN(guest.vm, Vm::create(options));
  guest.state = guest.vm->arena().make<GuestState>();
  if (guest.state == nullptr) return std::unexpected(make_error(ENOMEM, "place the guest's state in the guest arena"));
  guest.state->x2apic = x2apic;
  guest.state->halt = halt;
  // One clock for host and guest: the guest's TSC offset 0.
  for (std::size_t i = 0; i < guest.vm->vcpu_count(); ++i) {
    if (auto r = guest.vm->vcpu(i).set_tsc_offset(0); !r) {
      guest.tsc_note = fmt::format("no latency figures: {}", r.error().message());
      break;
    }
  }
  return guest;
}

// What a run of interrupts does besides sending them.
struct DeliveryPlan {
  std::uint32_t gsi = Vm::kFirstMsiGsi;
  std::uint8_t vector = device_irq::kDeviceVector;
  std::uint64_t count = 100;
  std::uint64_t nmi_every = 0;
  // Every K-th interrupt, KVM_SET_GSI_ROUTING with no entries first; on
  // every other of those, the eventfd is also signalled while the table is
  // empty, which must reach no vCPU.
  std::uint64_t empty_routing_every = 0;
  bool move_host_irq = false;  // each interrupt with the host IRQ on the next host CPU
  bool migrate_vcpus = false;  // each interrupt with its vCPU's thread on another host CPU
};

// Where the interrupts come from.
struct InterruptSource {
  int eventfd = -1;
  std::function<Result<void>()> trigger;  // one interrupt, the test's way
  // One signal of the eventfd that is done when the call returns (the
  // irqfd's wake-up has run), for the check while the table is empty.
  std::function<Result<void>()> signal_now;
  std::string host_irq_name;      // the /proc/interrupts name of its host IRQ, when it has one
  bool raises_host_irq = false;   // whether each trigger is a real host interrupt (the device sends it)
  std::string description;
};

// Runs the guest, sends plan.count interrupts from `source` through an
// irqfd on plan.gsi, the route moving round-robin among the vCPUs, and
// checks that each arrives once, at its vCPU, with nothing else arriving.
void deliver(Vm& vm, GuestState& state, const InterruptSource& source, const DeliveryPlan& plan,
             const std::string& tsc_note) {
  const std::uint32_t vcpus = static_cast<std::uint32_t>(vm.vcpu_count());
  state.vcpu_count = vcpus;
  for (std::uint32_t i = 0; i < vcpus; ++i) state.apic_ids[i] = vm.vcpu(i).id();
  vm.set_handler(plan.vector, device_irq::device_interrupt_handler);
  vm.set_handler(x86::kVectorNmi, device_irq::nmi_handler);
  vm.set_handler(device_irq::kWakeVector, device_irq::wake_handler);

  const std::vector<int> cpus = host_cpus();
  std::optional<HostIrq> host_irq;
  std::string affinity_before;
  if (plan.move_host_irq) {
    host_irq = find_host_irq(source.host_irq_name);
    ASSERT_TRUE(host_irq.has_value()) << "no line " << source.host_irq_name << " in /proc/interrupts";
    affinity_before = read_text(fmt::format("/proc/irq/{}/smp_affinity_list", host_irq->number));
    fmt::print("# host IRQ {} ({}), affinity {} before\n", host_irq->number, source.host_irq_name, affinity_before);
  }
  ScopeExit restore_affinity([&] {
    if (host_irq && !affinity_before.empty()) {
      (void)write_text(fmt::format("/proc/irq/{}/smp_affinity_list", host_irq->number), affinity_before);
    }
  });

  GuestRunner runner(vm, state);
  check(runner.start());
  const auto ready_deadline = std::chrono::steady_clock::now() + 30s;
  while (state.ready < vcpus && std::chrono::steady_clock::now() < ready_deadline) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(state.ready, vcpus) << "not every vCPU came up";

  auto message_for = [&](std::uint64_t i) {
    const bool nmi = plan.nmi_every && i % plan.nmi_every == plan.nmi_every - 1;
    return x86::msi_message(vm.vcpu(i % vcpus).id(), nmi ? x86::kVectorNmi : plan.vector,
                            nmi ? x86::DeliveryMode::nmi : x86::DeliveryMode::fixed);
  };
  auto arrived = [&] {
    std::uint64_t total = state.stray.fixed + state.stray.nmi;
    for (std::uint32_t v = 0; v < vcpus; ++v) total += state.arrivals[v].fixed + state.arrivals[v].nmi;
    return total;
  };
  x86::MsiMessage route = message_for(0);
  check(vm.set_msi_route(plan.gsi, route));
  VFIOLAB_ASSERT_OK(vm.assign_irqfd(plan.gsi, source.eventfd));
  bool irqfd_assigned = true;
  ScopeExit deassign([&] {
    if (irqfd_assigned) (void)vm.deassign_irqfd(plan.gsi, source.eventfd);
  });

  std::vector<std::uint64_t> expected_fixed(vcpus), expected_nmi(vcpus);
  std::vector<double> latencies_ns;
  std::uint64_t emptied = 0, signalled_while_empty = 0, host_moves = 0, migrations = 0;
  std::uint64_t taken_where_asked = 0, taken_where_deferred = 0;
  const double ticks_per_ns = tsc_ticks_per_ns();
  for (std::uint64_t i = 0; i < plan.count; ++i) {
    // Each earlier one arrived once (checked below): anything more is a
    // duplicate, or an interrupt nobody sent.
    ASSERT_EQ(arrived(), i) << "before interrupt " << i << " the guest had counted " << arrived()
                            << " arrivals for the " << i << " sent";
    const x86::MsiMessage message = message_for(i);
    if (plan.empty_routing_every && i % plan.empty_routing_every == plan.empty_routing_every - 1) {
      check(vm.clear_routes());
      if (emptied++ % 2 == 1) {
        // With no route, the signal must go nowhere. Taking the irqfd away
        // waits for its injection work, so a late one cannot land after
        // the route is back; then it is assigned again.
        const std::uint64_t before = arrived();
        check(source.signal_now(), "signal with the routing table empty");
        check(vm.deassign_irqfd(plan.gsi, source.eventfd));
        irqfd_assigned = false;
        std::this_thread::sleep_for(20ms);
        ASSERT_EQ(arrived(), before) << "the eventfd signalled while KVM's routing table was empty (before interrupt "
                                     << i << ", GSI " << plan.gsi << ") reached the guest";
        VFIOLAB_ASSERT_OK(vm.assign_irqfd(plan.gsi, source.eventfd));
        irqfd_assigned = true;
        ++signalled_while_empty;
      }
      check(vm.set_msi_route(plan.gsi, message));
      route = message;
    } else if (message.address != route.address || message.data != route.data) {
      check(vm.set_msi_route(plan.gsi, message));
      route = message;
    }
    const std::uint32_t target = static_cast<std::uint32_t>(i % vcpus);
    int host_cpu = -1;
    std::string effective;
    if (plan.move_host_irq) {
      host_cpu = cpus[(i + 1) % cpus.size()];
      VFIOLAB_ASSERT_OK(write_text(fmt::format("/proc/irq/{}/smp_affinity_list", host_irq->number),
                                   fmt::format("{}", host_cpu)));
      ++host_moves;
      // The kernel may defer the move to the next interrupt (the vector's
      // previous move not yet cleaned up: x86's -EBUSY, then a pending
      // move); then that one still arrives where effective_affinity says.
      effective = read_text(fmt::format("/proc/irq/{}/effective_affinity_list", host_irq->number));
      host_irq = find_host_irq(source.host_irq_name);
      ASSERT_TRUE(host_irq.has_value()) << "the line " << source.host_irq_name << " left /proc/interrupts";
    }
    int vcpu_cpu = -1;
    if (plan.migrate_vcpus) {
      // vCPU `target` goes to another host CPU each round of the vCPUs.
      vcpu_cpu = cpus[(i / vcpus + target) % cpus.size()];
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(vcpu_cpu, &set);
      ASSERT_EQ(::pthread_setaffinity_np(runner.thread(target).native_handle(), sizeof(set), &set), 0)
          << "pthread_setaffinity_np of vCPU " << target << " to CPU " << vcpu_cpu;
      ++migrations;
    }
    const bool nmi = (message.data >> 8 & 7) == static_cast<std::uint32_t>(x86::DeliveryMode::nmi);
    auto& arrivals = state.arrivals[target];
    volatile std::uint64_t& counter = nmi ? arrivals.nmi : arrivals.fixed;
    const std::uint64_t before = counter;
    (nmi ? expected_nmi : expected_fixed)[target]++;

    const std::uint64_t sent_tsc = __rdtsc();
    check(source.trigger(), fmt::format("interrupt {}", i));
    const auto deadline = std::chrono::steady_clock::now() + kArrivalTimeout;
    while (counter == before && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    std::string guest_errors;  // what the vCPUs ran into, when it did not arrive (an unexpected vector, say)
    if (counter == before) {
      for (const auto& error : runner.stop()) guest_errors += "; a vCPU: " + error;
    }
    ASSERT_NE(counter, before) << "interrupt " << i << " (" << (nmi ? "NMI" : "fixed") << ", GSI " << plan.gsi
                               << ", vector " << fmt::format("{:#x}", nmi ? x86::kVectorNmi : plan.vector)
                               << ") did not reach vCPU " << target << " (APIC ID " << vm.vcpu(target).id()
                               << ") within " << kArrivalTimeout.count() << " s"
                               << (host_cpu >= 0 ? fmt::format(", host IRQ on CPU {}", host_cpu) : "")
                               << (vcpu_cpu >= 0 ? fmt::format(", vCPU thread on CPU {}", vcpu_cpu) : "")
                               << guest_errors;
    if (tsc_note.empty()) latencies_ns.push_back(static_cast<double>(arrivals.last_tsc - sent_tsc) / ticks_per_ns);
    if (plan.move_host_irq && source.raises_host_irq) {
      // The device's interrupt was taken by the host CPU it was moved to.
      auto now = find_host_irq(source.host_irq_name);
      ASSERT_TRUE(now.has_value()) << "the line " << source.host_irq_name << " left /proc/interrupts";
      const std::vector<int> allowed = parse_cpu_list(effective);
      std::string rises;
      std::uint64_t on_effective = 0, total = 0;
      int taken_on = -1;
      for (std::size_t c = 0; c < now->per_cpu.size() && c < host_irq->per_cpu.size(); ++c) {
        const std::uint64_t rise = now->per_cpu[c] - host_irq->per_cpu[c];
        total += rise;
        if (std::find(allowed.begin(), allowed.end(), now->cpus[c]) != allowed.end()) on_effective += rise;
        if (rise) {
          rises += fmt::format(" CPU{}+{}", now->cpus[c], rise);
          taken_on = now->cpus[c];
        }
      }
      EXPECT_TRUE(total == 1 && on_effective == 1)
          << "interrupt " << i << ": host IRQ " << host_irq->number << " moved to CPU " << host_cpu
          << " (effective_affinity_list then: " << effective << "), but /proc/interrupts rose by"
          << (rises.empty() ? " nothing" : rises);
      if (total == 1) ++(taken_on == host_cpu ? taken_where_asked : taken_where_deferred);
    }
    if (plan.migrate_vcpus) {
      const auto ran_on = last_cpu(runner.tid(target));
      EXPECT_EQ(ran_on, std::optional<int>(vcpu_cpu))
          << "interrupt " << i << ": vCPU " << target << "'s thread (tid " << runner.tid(target)
          << ") was moved to CPU " << vcpu_cpu << " and handled the interrupt, but last ran on CPU "
          << (ran_on ? fmt::format("{}", *ran_on) : std::string("?"));
    }
  }
  std::this_thread::sleep_for(50ms);  // for a duplicate to show up
  auto errors = runner.stop();
  for (const auto& error : errors) ADD_FAILURE() << error;

  std::uint64_t fixed = 0, nmis = 0;
  for (std::uint32_t v = 0; v < vcpus; ++v) {
    EXPECT_EQ(state.arrivals[v].fixed, expected_fixed[v])
        << "fixed interrupts at vCPU " << v << " (APIC ID " << vm.vcpu(v).id() << ")";
    EXPECT_EQ(state.arrivals[v].nmi, expected_nmi[v]) << "NMIs at vCPU " << v << " (APIC ID " << vm.vcpu(v).id() << ")";
    fixed += state.arrivals[v].fixed;
    nmis += state.arrivals[v].nmi;
    if (vcpus <= 4 || state.arrivals[v].fixed != expected_fixed[v] || state.arrivals[v].nmi != expected_nmi[v]) {
      fmt::print("# vCPU {} (APIC ID {}): {} fixed, {} NMI\n", v, vm.vcpu(v).id(), state.arrivals[v].fixed,
                 state.arrivals[v].nmi);
    }
  }
  EXPECT_EQ(state.stray.fixed + state.stray.nmi, 0u)
      << "interrupts at an APIC ID that is no vCPU's (" << state.stray.fixed << " fixed, " << state.stray.nmi
      << " NMI)";
  fmt::print("# delivered {} of {} ({} fixed, {} NMI) on GSI {} vector {:#x} to {} vCPU(s) (APIC IDs {}..{}), {}, {}, "
             "triggered by {}\n",
             fixed + nmis, plan.count, fixed, nmis, plan.gsi, plan.vector, vcpus, vm.vcpu(0).id(),
             vm.vcpu(vcpus - 1).id(), state.halt ? "halted" : "spinning", state.x2apic ? "x2APIC" : "xAPIC",
             source.description);
  if (plan.empty_routing_every) {
    fmt::print("# routing table emptied {} time(s); signalled while empty {} time(s), delivered nothing\n", emptied,
               signalled_while_empty);
  }
  if (plan.move_host_irq && source.raises_host_irq) {
    fmt::print("# host IRQ {} moved {} time(s) among CPUs {}: taken {} time(s) on the CPU asked for, {} on the old "
               "one (move deferred, as effective_affinity_list said)\n",
               host_irq->number, host_moves, fmt::join(cpus, ","), taken_where_asked, taken_where_deferred);
    EXPECT_GT(taken_where_asked, 0u) << "host IRQ " << host_irq->number
                                     << ": no interrupt was taken on the CPU its affinity was moved to";
  } else if (plan.move_host_irq) {
    fmt::print("# host IRQ {} moved {} time(s) among CPUs {} (VFIO triggers the eventfd in software: the host IRQ "
               "itself never fires)\n",
               host_irq->number, host_moves, fmt::join(cpus, ","));
  }
  if (plan.migrate_vcpus) {
    fmt::print("# vCPU threads moved {} time(s) among CPUs {}, each handled its interrupt there\n", migrations,
               fmt::join(cpus, ","));
  }
  if (!latencies_ns.empty()) {
    const auto [min, max] = std::minmax_element(latencies_ns.begin(), latencies_ns.end());
    double sum = 0;
    for (double l : latencies_ns) sum += l;
    fmt::print("# latency trigger to guest handler: min {:.1f} us, mean {:.1f} us, max {:.1f} us ({} interrupts)\n",
               *min / 1000, sum / static_cast<double>(latencies_ns.size()) / 1000, *max / 1000, latencies_ns.size());
  } else if (!tsc_note.empty()) {
    fmt::print("# {}\n", tsc_note);
  }
  irqfd_assigned = false;
  check(vm.deassign_irqfd(plan.gsi, source.eventfd));
}

// A GSI from 24 (past the irqchip's pins) to the last KVM routes, and a
// vector from 32 (past the exceptions) that is neither the wake-up's nor the
// spurious one, from `seed`.
void randomize(DeliveryPlan& plan, const Kvm& kvm, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int routes = kvm.extension(KVM_CAP_IRQ_ROUTING);  // KVM_MAX_IRQ_ROUTES
  const std::uint32_t last_gsi = routes > static_cast<int>(Vm::kFirstMsiGsi) ? static_cast<std::uint32_t>(routes - 1)
                                                                             : Vm::kFirstMsiGsi;
  plan.gsi = std::uniform_int_distribution<std::uint32_t>(Vm::kFirstMsiGsi, last_gsi)(rng);
  do {
    plan.vector = static_cast<std::uint8_t>(std::uniform_int_distribution<unsigned>(32, 254)(rng));
  } while (plan.vector == device_irq::kWakeVector);
  fmt::print("# random GSI {} (of {}..{}) and vector {:#x}, seed {} (--seed {} replays them)\n", plan.gsi,
             Vm::kFirstMsiGsi, last_gsi, plan.vector, seed, seed);
}

class vfio_pci_device_irq_test : public testing::TestWithParam<IrqIndex> {
 protected:
  void SetUp() override {
    if (harness::device_bdf().empty()) {
      GTEST_SKIP() << "needs a device (a BDF argument or VFIO_SELFTESTS_BDF); none was given";
    }
    vcpus_ = static_cast<std::uint32_t>(vcpu_count.number_or(2));
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

    VFIOLAB_ASSIGN_OR_SKIP(guest, make_irq_guest({.vcpus = vcpus_}, !xapic.given(), !spin.given()));
    vm_ = std::move(guest.vm);
    state_ = guest.state;
    tsc_note_ = std::move(guest.tsc_note);
  }

  void TearDown() override {
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

  // The plan every case starts from: the program's options.
  DeliveryPlan plan(std::uint64_t default_count) const {
    DeliveryPlan plan;
    plan.count = interrupt_count.number_or(default_count);
    plan.nmi_every = nmi_every_;
    return plan;
  }

  InterruptSource source() {
    InterruptSource source;
    source.eventfd = device_->irq_eventfd(vector_).fd();
    source.trigger = [this]() -> Result<void> {
      if (driver_) return driver_->send_msi();
      return device_->trigger_irq(GetParam(), vector_);
    };
    source.signal_now = [this] { return device_->trigger_irq(GetParam(), vector_); };
    source.host_irq_name = fmt::format("vfio-{}[{}]({})", GetParam() == IrqIndex::msix ? "msix" : "msi", vector_,
                                       device_->name());
    source.raises_host_irq = driver_ != nullptr;
    source.description =
        driver_ ? fmt::format("the device ({} driver)", driver_->name()) : std::string("VFIO");
    source.description += fmt::format(" on {} vector {}", irq_index_name(GetParam()), vector_);
    return source;
  }

  void run(const DeliveryPlan& plan) {
    // Nothing may have fired since the set-up: every interrupt counted
    // must be one this test caused.
    const auto before = check(device_->irq_eventfd(vector_).read());
    ASSERT_FALSE(before.has_value()) << "vector " << vector_ << " fired " << before.value_or(0)
                                     << " time(s) before the test sent anything";
    deliver(*vm_, *state_, source(), plan, tsc_note_);
  }

  // Why `what` cannot be done here: fewer than two host CPUs.
  static std::optional<std::string> fewer_than_two_host_cpus(const char* what) {
    const auto cpus = host_cpus();
    if (cpus.size() >= 2) return std::nullopt;
    return fmt::format("{} needs two host CPUs; this process may run on {}{}", what, cpus.size(),
                       cpus.empty() ? std::string() : fmt::format(" (CPU {})", cpus.front()));
  }

  std::uint32_t vcpus_ = 0;
  std::uint64_t nmi_every_ = 0;
  std::shared_ptr<Iommu> iommu_;
  std::unique_ptr<PciDevice> device_;
  DriverHandle driver_;
  std::optional<MappedBuffer> ring_;
  std::uint32_t vector_ = 0;
  std::unique_ptr<Vm> vm_;
  GuestState* state_ = nullptr;
  std::string tsc_note_;
};

TEST_P(vfio_pci_device_irq_test, route_to_guest) { run(plan(100)); }

// Like Linux's KVM irq_test -a: the host IRQ of the device's vector moved to
// the next host CPU (/proc/irq/N/smp_affinity_list) before each interrupt.
// With -d the device raises it, and /proc/interrupts must count it on that
// CPU; VFIO's trigger signals the eventfd without it.
TEST_P(vfio_pci_device_irq_test, host_irq_affinity) {
  if (auto why = fewer_than_two_host_cpus("moving the host IRQ")) GTEST_SKIP() << *why;
  DeliveryPlan p = plan(kMovingCount);
  p.move_host_irq = true;
  run(p);
}

// Like irq_test -m: before each interrupt its vCPU's thread is pinned to
// another host CPU (sched_setaffinity), and must have handled it there.
TEST_P(vfio_pci_device_irq_test, vcpu_migration) {
  if (auto why = fewer_than_two_host_cpus("migrating the vCPUs")) GTEST_SKIP() << *why;
  DeliveryPlan p = plan(kMovingCount);
  p.migrate_vcpus = true;
  run(p);
}

// Like irq_test -e: every 3rd interrupt, KVM's routing table set empty and
// the route set again before it; the irqfd must follow.
TEST_P(vfio_pci_device_irq_test, empty_routing) {
  DeliveryPlan p = plan(kMovingCount);
  p.empty_routing_every = 3;
  run(p);
}

// Like irq_test's default: a random GSI and guest vector.
TEST_P(vfio_pci_device_irq_test, random_gsi_vector) {
  DeliveryPlan p = plan(kMovingCount);
  randomize(p, vm_->kvm(), seed_for_run());
  run(p);
}

INSTANTIATE_TEST_SUITE_P(vfio_pci_device_irq_test, vfio_pci_device_irq_test, testing::Values(IrqIndex::msi, IrqIndex::msix),
                         [](const testing::TestParamInfo<IrqIndex>& info) {
                           return info.param == IrqIndex::msi ? "msi" : "msix";
                         });

// No device: the irqfd's eventfd is written from userspace (irq_test
// without -d). These run with or without a BDF and use none; -f kvm_irqfd
// runs them alone.
class kvm_irqfd : public testing::Test {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(eventfd, EventFd::create());
    eventfd_ = std::move(eventfd);
  }

  InterruptSource source() {
    InterruptSource source;
    source.eventfd = eventfd_->fd();
    source.trigger = [this]() -> Result<void> {
      const std::uint64_t one = 1;
      if (::write(eventfd_->fd(), &one, sizeof(one)) != sizeof(one)) {
        const int err = errno;
        return std::unexpected(make_error(err, "write", "eventfd"));
      }
      return {};
    };
    source.signal_now = source.trigger;
    source.description = "a write to the eventfd";
    return source;
  }

  void create_vm(const VmOptions& options) {
    VFIOLAB_ASSIGN_OR_SKIP(guest, make_irq_guest(options, !xapic.given(), !spin.given()));
    vm_ = std::move(guest.vm);
    state_ = guest.state;
    tsc_note_ = std::move(guest.tsc_note);
  }

  std::optional<EventFd> eventfd_;
  std::unique_ptr<Vm> vm_;
  GuestState* state_ = nullptr;
  std::string tsc_note_;
};

// A random GSI and vector, the vCPU threads migrating among the host CPUs
// (when there are two) and the routing table emptied now and then.
TEST_F(kvm_irqfd, eventfd_to_guest) {
  const auto vcpus = static_cast<std::uint32_t>(vcpu_count.number_or(2));
  ASSERT_GE(vcpus, 1u);
  ASSERT_LE(vcpus, device_irq::kMaxVcpus);
  create_vm({.vcpus = vcpus});
  if (HasFatalFailure() || IsSkipped()) return;
  DeliveryPlan p;
  p.count = interrupt_count.number_or(kMovingCount);
  p.nmi_every = nmi_every.number_or(0);
  p.empty_routing_every = 4;
  p.migrate_vcpus = host_cpus().size() >= 2;
  if (!p.migrate_vcpus) fmt::print("# one host CPU: the vCPU threads stay where they are\n");
  randomize(p, vm_->kvm(), seed_for_run());
  deliver(*vm_, *state_, source(), p, tsc_note_);
}

// More than 16 vCPUs, some with x2APIC IDs above 255, each sent one
// interrupt: KVM's 32-bit x2APIC IDs in MSI routes (the ID's upper bits in
// the address's upper half), and APIC ID 255 one vCPU rather than a
// broadcast.
TEST_F(kvm_irqfd, x2apic_ids_above_255) {
  if (xapic.given()) GTEST_SKIP() << "x2APIC IDs above 255 need x2APIC mode (--xapic was given)";
  VFIOLAB_ASSIGN_OR_SKIP(kvm, Kvm::open());
  bool x2apic_offered = false;
  for (const auto& entry : kvm->supported_cpuid()) {
    if (entry.function == 1 && entry.index == 0) x2apic_offered = entry.ecx & (1u << 21);
  }
  if (!x2apic_offered) GTEST_SKIP() << "KVM offers no x2APIC (CPUID.1:ECX[21] not in KVM_GET_SUPPORTED_CPUID)";
  std::vector<std::uint32_t> ids;
  for (std::uint32_t id = 0; id < 16; ++id) ids.push_back(id);
  for (std::uint32_t id : {255u, 256u, 511u}) ids.push_back(id);
  const int max_vcpus = kvm->extension(KVM_CAP_MAX_VCPUS);
  const int max_vcpu_id = kvm->extension(KVM_CAP_MAX_VCPU_ID);
  const int nr_vcpus = kvm->extension(KVM_CAP_NR_VCPUS);
  if (max_vcpus < static_cast<int>(ids.size())) {
    GTEST_SKIP() << "KVM offers " << max_vcpus << " vCPUs per VM (KVM_CAP_MAX_VCPUS); this case needs " << ids.size();
  }
  if (max_vcpu_id <= static_cast<int>(ids.back())) {
    GTEST_SKIP() << "KVM offers vCPU ids below " << max_vcpu_id << " (KVM_CAP_MAX_VCPU_ID); this case needs "
                 << ids.back();
  }
  fmt::print("# KVM: {} vCPUs per VM (KVM_CAP_MAX_VCPUS), ids below {}, {} recommended (KVM_CAP_NR_VCPUS)\n",
             max_vcpus, max_vcpu_id, nr_vcpus);
  create_vm({.vcpu_ids = ids, .x2apic_32bit_ids = true});
  if (HasFatalFailure() || IsSkipped()) return;
  DeliveryPlan p;
  p.count = ids.size();
  deliver(*vm_, *state_, source(), p, tsc_note_);
}

}  // namespace
}  // namespace vfiolab
