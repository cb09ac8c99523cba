// kvm_debug_registers_test: the x86 debug registers DR6 and DR7 hold their
// architectural reset values (DR6 0xffff0ff0, DR7 0x400) where they must:
//   - through KVM's uAPI: on a new vCPU, across KVM_SET_DEBUGREGS and after
//     an INIT (KVM has no vCPU reset ioctl: vCPU 0's guest sends vCPU 1 an
//     INIT IPI through its x2APIC's interrupt command register, and KVM
//     resets vCPU 1 as the local APIC would);
//   - inside a guest: at start, and after a single-step, an ICEBP and an
//     instruction breakpoint #DB, with the status bits each should set and
//     BLD (bit 11) and RTM (bit 16) still 1;
//   - on the host: a userspace #DB (ptrace single steps, a perf hardware
//     watchpoint) must not make the kernel warn about a bus lock, the false
//     warning a zeroed DR6 caused on CPUs with bus lock detection.
// Needs no PCI device; the KVM tests SKIP without /dev/kvm.
#include "device.h"
#include "kvm_debug_registers.h"

#include "vfiolab/kmsg.h"
#include "vfiolab/kvm/vm.h"

#include <fmt/format.h>
#include <cpuid.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

VFIOLAB_NO_DEVICE_NEEDED();

namespace vfiolab {
namespace {

using namespace kvm;
using namespace std::chrono_literals;
using kvm_debug_registers::Observations;

constexpr std::uint64_t kDr6AfterSingleStep = x86::kDr6Reset | x86::kDr6Bs;    // 0xffff4ff0
constexpr std::uint64_t kDr6AfterBreakpoint0 = x86::kDr6Reset | x86::kDr6B0;  // 0xffff0ff1

std::string hex(std::uint64_t value) { return fmt::format("{:#x}", value); }

void expect_reset_values(const kvm_debugregs& regs, const char* when) {
  EXPECT_EQ(hex(regs.dr6), hex(x86::kDr6Reset)) << "DR6 " << when;
  EXPECT_EQ(hex(regs.dr7), hex(x86::kDr7Reset)) << "DR7 " << when;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(regs.db[i], 0u) << "DR" << i << " " << when;
}

TEST(kvm_debug_registers_test, new_vcpu) {
  VFIOLAB_ASSIGN_OR_SKIP(vm, Vm::create({.vcpus = 1}));
  VFIOLAB_ASSIGN_OR_SKIP(regs, vm->vcpu(0).debugregs());
  fmt::print("# new vCPU: DR6 {:#x} DR7 {:#x}\n", regs.dr6, regs.dr7);
  expect_reset_values(regs, "of a new vCPU");
}

TEST(kvm_debug_registers_test, set_get_round_trip) {
  VFIOLAB_ASSIGN_OR_SKIP(vm, Vm::create({.vcpus = 1}));
  Vcpu& vcpu = vm->vcpu(0);
  VFIOLAB_ASSIGN_OR_SKIP(regs, vcpu.debugregs());
  // The values read back as written.
  check(vcpu.set_debugregs(regs));
  VFIOLAB_ASSIGN_OR_SKIP(same, vcpu.debugregs());
  expect_reset_values(same, "after KVM_SET_DEBUGREGS of what KVM_GET_DEBUGREGS read");

  // Other values: breakpoints, B0 and BS in DR6, breakpoint 0 enabled.
  kvm_debugregs changed = regs;
  for (int i = 0; i < 4; ++i) changed.db[i] = 0x1000u * (i + 1);
  changed.dr6 = x86::kDr6Reset | x86::kDr6B0 | x86::kDr6Bs;
  changed.dr7 = x86::kDr7Reset | x86::kDr7L0;
  check(vcpu.set_debugregs(changed));
  VFIOLAB_ASSIGN_OR_SKIP(read, vcpu.debugregs());
  EXPECT_EQ(hex(read.dr6), hex(changed.dr6));
  EXPECT_EQ(hex(read.dr7), hex(changed.dr7));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(hex(read.db[i]), hex(changed.db[i])) << "DR" << i;

  // And back.
  check(vcpu.set_debugregs(regs));
  VFIOLAB_ASSIGN_OR_SKIP(back, vcpu.debugregs());
  expect_reset_values(back, "after setting the reset values again");
}

TEST(kvm_debug_registers_test, reset_by_init) {
  VFIOLAB_ASSIGN_OR_SKIP(vm, Vm::create({.vcpus = 2}));
  Vcpu& target = vm->vcpu(1);  // an AP: after INIT it waits for a SIPI, which shows the INIT was taken
  kvm_debugregs changed{};
  for (int i = 0; i < 4; ++i) changed.db[i] = 0x2000u * (i + 1);
  changed.dr6 = x86::kDr6Reset | x86::kDr6B0;
  changed.dr7 = x86::kDr7Reset | x86::kDr7L0;
  VFIOLAB_ASSERT_OK(target.set_debugregs(changed));

  // vCPU 0's guest sends the INIT IPI through its local APIC.
  auto* target_id = vm->arena().make<std::uint32_t>(target.id());
  check(vm->vcpu(0).start(kvm_debug_registers::guest_send_init, target_id));
  check(vm->vcpu(0).run_until_done());
  VFIOLAB_ASSIGN_OR_SKIP(state, target.mp_state());  // KVM takes the pending INIT here
  EXPECT_EQ(state, static_cast<std::uint32_t>(KVM_MP_STATE_INIT_RECEIVED)) << "the INIT did not reach vCPU 1";
  VFIOLAB_ASSIGN_OR_SKIP(regs, target.debugregs());
  fmt::print("# after INIT: DR6 {:#x} DR7 {:#x}\n", regs.dr6, regs.dr7);
  expect_reset_values(regs, "after INIT");

  // A vCPU created after all that starts from the reset values too.
  VFIOLAB_ASSIGN_OR_SKIP(fresh, vm->add_vcpu());
  VFIOLAB_ASSIGN_OR_SKIP(fresh_regs, fresh->debugregs());
  expect_reset_values(fresh_regs, "of a vCPU created after another's were changed");
}

// Each runs one guest function in a VM of its own with the #DB handler.
class kvm_guest_debug_registers_test : public testing::Test {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(vm, Vm::create({.vcpus = 1}));
    vm_ = std::move(vm);
    seen_ = vm_->arena().make<Observations>();
    ASSERT_NE(seen_, nullptr);
    vm_->set_handler(x86::kVectorDebug, kvm_debug_registers::debug_exception_handler);
  }

  void run(void (*function)(Observations*)) {
    Vcpu& vcpu = vm_->vcpu(0);
    check(vcpu.start(function, seen_));
    check(vcpu.run_until_done());
  }

  // After the #DB the handler put DR6 back, and DR7 is at its reset value.
  void expect_reset_at_end() {
    EXPECT_EQ(hex(seen_->dr6_at_end), hex(x86::kDr6Reset)) << "DR6 after the #DB handler reset it";
    EXPECT_EQ(hex(seen_->dr7_at_end), hex(x86::kDr7Reset));
    VFIOLAB_ASSIGN_OR_SKIP(regs, vm_->vcpu(0).debugregs());  // what KVM says the guest left
    EXPECT_EQ(hex(regs.dr6), hex(x86::kDr6Reset)) << "KVM_GET_DEBUGREGS after the guest ran";
    EXPECT_EQ(hex(regs.dr7), hex(x86::kDr7Reset)) << "KVM_GET_DEBUGREGS after the guest ran";
  }

  std::unique_ptr<Vm> vm_;
  Observations* seen_ = nullptr;
};

TEST_F(kvm_guest_debug_registers_test, at_start) {
  run(kvm_debug_registers::guest_read_at_start);
  fmt::print("# guest at start: DR6 {:#x} DR7 {:#x}\n", seen_->dr6_at_start, seen_->dr7_at_start);
  EXPECT_EQ(hex(seen_->dr6_at_start), hex(x86::kDr6Reset));
  EXPECT_EQ(hex(seen_->dr7_at_start), hex(x86::kDr7Reset));
}

TEST_F(kvm_guest_debug_registers_test, single_step) {
  run(kvm_debug_registers::guest_single_step);
  fmt::print("# guest DR6 in the single-step #DB: {:#x}\n", seen_->dr6_single_step);
  EXPECT_EQ(seen_->debug_exceptions_single_step, 1u);
  EXPECT_EQ(hex(seen_->dr6_single_step), hex(kDr6AfterSingleStep)) << "BS alone, BLD and RTM still 1";
  expect_reset_at_end();
}

// What ICEBP does in a process on this (host) CPU: SIGTRAP from a #DB, or
// SIGILL from a #UD where the CPU does not implement it (QEMU's TCG, for one).
std::string icebp_on_this_cpu() {
  pid_t child = fork();
  if (child == 0) {
    asm volatile(".byte 0xf1");
    _exit(0);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child) return "unknown";
  if (WIFSIGNALED(status)) return strsignal(WTERMSIG(status));
  return fmt::format("exit {}", WEXITSTATUS(status));
}

TEST_F(kvm_guest_debug_registers_test, icebp) {
  vm_->set_handler(x86::kVectorInvalidOpcode, kvm_debug_registers::invalid_opcode_handler);
  Vcpu& vcpu = vm_->vcpu(0);
  check(vcpu.start(kvm_debug_registers::guest_icebp, seen_));
  auto done = vcpu.run_until_done();
  // Some KVMs cannot emulate ICEBP and give up with an emulation failure
  // whose instruction bytes start with 0xf1: that is this KVM's limit.
  const kvm_run& state = *vcpu.run_state();
  if (!done && state.exit_reason == KVM_EXIT_INTERNAL_ERROR &&
      state.emulation_failure.suberror == KVM_INTERNAL_ERROR_EMULATION &&
      (state.emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
      state.emulation_failure.insn_size > 0 && state.emulation_failure.insn_bytes[0] == 0xf1) {
    GTEST_SKIP() << "this KVM cannot emulate ICEBP (0xf1): " << done.error().message();
  }
  check(done);
  if (seen_->invalid_opcodes_icebp) {
    const std::string host = icebp_on_this_cpu();
    if (host != strsignal(SIGTRAP)) {
      GTEST_SKIP() << "ICEBP raised #UD in the guest, and this CPU does not implement ICEBP either (a process "
                      "running it here gets "
                   << host << ", not SIGTRAP); QEMU's TCG does not";
    }
    FAIL() << "ICEBP raised #UD in the guest, though this CPU implements it (a process running it gets SIGTRAP)";
  }
  fmt::print("# guest DR6 in the ICEBP #DB: {:#x}\n", seen_->dr6_icebp);
  EXPECT_EQ(seen_->debug_exceptions_icebp, 1u);
  EXPECT_EQ(hex(seen_->dr6_icebp), hex(x86::kDr6Reset)) << "no B0-B3 or BS for ICEBP, BLD and RTM still 1";
  expect_reset_at_end();
}

TEST_F(kvm_guest_debug_registers_test, instruction_breakpoint) {
  run(kvm_debug_registers::guest_breakpoint);
  fmt::print("# guest DR6 in the breakpoint 0 #DB: {:#x}\n", seen_->dr6_breakpoint);
  EXPECT_EQ(seen_->debug_exceptions_breakpoint, 1u);
  EXPECT_EQ(hex(seen_->dr6_breakpoint), hex(kDr6AfterBreakpoint0)) << "B0 alone, BLD and RTM still 1";
  EXPECT_EQ(hex(seen_->breakpoint_rip), hex(seen_->breakpoint_address)) << "the #DB is a fault at the breakpoint";
  expect_reset_at_end();
}

// ---- The host: userspace #DB and the bus lock warning.

bool cpu_has_bus_lock_detect() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return ecx & x86::kCpuid7EcxBusLockDetect;
}

// The messages x86's split lock / bus lock detection logs for a #DB it
// takes for a bus lock: "x86/split lock detection: #DB: NAME/PID took a
// bus_lock trap at address: 0x...".
std::vector<std::string> bus_lock_warnings(KernelLogReader& log) {
  std::vector<std::string> found;
  for (auto& line : log.read_new()) {
    if (line.find("bus_lock trap") != std::string::npos || line.find("split lock detection") != std::string::npos) {
      found.push_back(line);
    }
  }
  return found;
}

class host_debug_exception_test : public testing::Test {
 protected:
  void SetUp() override {
    auto log = KernelLogReader::open();
    if (!log) GTEST_SKIP() << "cannot read the kernel log: " << log.error().message();
    log_.emplace(std::move(*log));
  }
  // After the #DBs: no warning may have appeared; then SKIP where the CPU
  // could not have produced one.
  void check_no_warning(const std::string& what) {
    std::this_thread::sleep_for(100ms);  // printk is asynchronous
    auto warnings = bus_lock_warnings(*log_);
    for (const auto& line : warnings) ADD_FAILURE() << "after " << what << ", the kernel logged: " << line;
    if (warnings.empty() && !cpu_has_bus_lock_detect()) {
      GTEST_SKIP() << "this CPU has no bus lock detection (CPUID.(EAX=7,ECX=0):ECX[24] BUS_LOCK_DETECT is 0), so no "
                      "bus lock warning could appear; "
                   << what << " ran without one";
    }
  }
  std::optional<KernelLogReader> log_;
};

// Single-steps a child under ptrace on each CPU: the first #DB on a CPU is
// the one a zeroed DR6 misreported.
TEST_F(host_debug_exception_test, ptrace_single_step) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  int cpus = 0, steps = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      sched_setaffinity(0, sizeof(one), &one);
      ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
      raise(SIGSTOP);
      for (int i = 0; i < 1000; ++i) asm volatile("" ::: "memory");  // instructions to step through
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSTOPPED(status));
    for (int step = 0; step < 50; ++step) {
      ASSERT_EQ(ptrace(PTRACE_SINGLESTEP, child, nullptr, nullptr), 0) << strerror(errno);
      ASSERT_EQ(waitpid(child, &status, 0), child);
      ASSERT_TRUE(WIFSTOPPED(status)) << "the child did not stop after a single step";
      EXPECT_EQ(WSTOPSIG(status), SIGTRAP);
      ++steps;
    }
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    ++cpus;
  }
  fmt::print("# {} single steps on {} CPU(s)\n", steps, cpus);
  check_no_warning(fmt::format("{} ptrace single steps", steps));
}

// A perf hardware watchpoint on a variable this process writes.
TEST_F(host_debug_exception_test, hardware_watchpoint) {
  static volatile int watched = 0;
  perf_event_attr attr{};
  attr.type = PERF_TYPE_BREAKPOINT;
  attr.size = sizeof(attr);
  attr.bp_type = HW_BREAKPOINT_W;
  attr.bp_addr = reinterpret_cast<std::uintptr_t>(&watched);
  attr.bp_len = HW_BREAKPOINT_LEN_4;
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  const int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC));
  if (fd < 0) GTEST_SKIP() << "perf_event_open of a hardware breakpoint: " << strerror(errno);
  UniqueFd event(fd);
  constexpr int kWrites = 100;
  for (int i = 0; i < kWrites; ++i) watched = i;
  std::uint64_t count = 0;
  ASSERT_EQ(read(event.get(), &count, sizeof(count)), static_cast<ssize_t>(sizeof(count)));
  EXPECT_EQ(count, static_cast<std::uint64_t>(kWrites)) << "each write should have hit the watchpoint";
  fmt::print("# {} watchpoint hits\n", count);
  check_no_warning(fmt::format("{} watchpoint #DBs", count));
}

}  // namespace
}  // namespace vfiolab
