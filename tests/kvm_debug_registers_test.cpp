// kvm_debug_registers_test: the x86 debug registers DR6 and DR7 hold their
// architectural reset values (DR6 0xffff0ff0, DR7 0x400) where they must:
//   - through KVM's uAPI: on a new vCPU, across KVM_SET_DEBUGREGS and after
//     an INIT (KVM has no vCPU reset ioctl: vCPU 0's guest sends vCPU 1 an
//     INIT IPI through its x2APIC's interrupt command register, and KVM
//     resets vCPU 1 as the local APIC would);
//   - inside a guest: at start, and after a single-step, an ICEBP and an
//     instruction breakpoint #DB, with the status bits each should set and
//     BLD (bit 11) and RTM (bit 16) still 1;
//   - from the host (KVM_SET_GUEST_DEBUG): an INT3, instruction breakpoints
//     and write watchpoints in each of DR0-DR3, single steps over STI and
//     MOV SS with interrupts held off, and DR7.GD, each a KVM_EXIT_DEBUG
//     with the right exception, pc and DR6;
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

// ---- The host debugs the guest: KVM_SET_GUEST_DEBUG, each hit a
// KVM_EXIT_DEBUG that says which exception, where (pc) and why (DR6).
// No #DB handler is installed in these guests (nor a #BP handler, but in
// software_breakpoint): an exception KVM lets through to the guest instead
// of exiting fails it. Where QEMU's TCG (the lab's CPU) lacks what a check
// needs, the check SKIPs saying what; on any other CPU it runs.

using kvm_debug_registers::HostDebugShared;

std::uint64_t address(const void* label) { return reinterpret_cast<std::uint64_t>(label); }

std::string describe(const kvm_debug_exit_arch& exit) {
  return fmt::format("exception {} at pc {:#x}, DR6 {:#x}, DR7 {:#x}", exit.exception, exit.pc, exit.dr6, exit.dr7);
}

kvm_guest_debug guest_debug(std::uint32_t control, std::uint64_t dr7 = x86::kDr7Reset) {
  kvm_guest_debug debug{};
  debug.control = KVM_GUESTDBG_ENABLE | control;
  debug.arch.debugreg[7] = dr7;
  return debug;
}

// The CPU's brand string (CPUID 0x80000002-0x80000004), "" without one.
std::string cpu_brand() {
  unsigned words[12] = {};
  for (unsigned i = 0; i < 3; ++i) {
    if (!__get_cpuid(0x80000002 + i, &words[4 * i], &words[4 * i + 1], &words[4 * i + 2], &words[4 * i + 3])) return "";
  }
  std::string brand(reinterpret_cast<const char*>(words), sizeof(words));
  brand.resize(brand.find('\0') == std::string::npos ? brand.size() : brand.find('\0'));
  return brand;
}

class kvm_set_guest_debug_test : public testing::Test {
 protected:
  void SetUp() override {
    VFIOLAB_ASSIGN_OR_SKIP(vm, Vm::create({.vcpus = 1}));
    vm_ = std::move(vm);
    if (vm_->kvm().extension(KVM_CAP_SET_GUEST_DEBUG) <= 0) {
      GTEST_SKIP() << "this KVM does not offer KVM_CAP_SET_GUEST_DEBUG: the host cannot debug a guest";
    }
    shared_ = vm_->arena().make<HostDebugShared>();
    ASSERT_NE(shared_, nullptr);
    // The handler table is per process: other tests installed a #DB handler.
    vm_->set_handler(x86::kVectorDebug, nullptr);
    vm_->set_handler(x86::kVectorBreakpoint, nullptr);
    vm_->set_handler(kvm_debug_registers::kSelfIpiVector, kvm_debug_registers::self_ipi_handler);
  }

  Vcpu& vcpu() { return vm_->vcpu(0); }

  // The exit must be a #DB or #BP (`vector`) at `pc`, with DR6 `dr6`.
  void expect_exit(const kvm_debug_exit_arch& exit, std::uint32_t vector, const void* pc, std::uint64_t dr6,
                   const std::string& what) {
    fmt::print("# {}: {}\n", what, describe(exit));
    EXPECT_EQ(exit.exception, vector) << what << ": " << describe(exit);
    EXPECT_EQ(hex(exit.pc), hex(address(pc))) << what << ": " << describe(exit);
    EXPECT_EQ(hex(exit.dr6), hex(dr6)) << what << ": " << describe(exit);
  }

  // Under QEMU's TCG, SKIPs unless a breakpoint KVM loads into the guest's
  // DR0/DR7 (KVM_SET_DEBUGREGS, no guest debugging) fires: some TCGs take
  // DR7 from the VMCB at VMRUN without arming its breakpoints, so neither
  // the guest's nor the host's breakpoints set by KVM can fire there. On
  // any other CPU nothing is skipped. In a VM of its own.
  void skip_unless_kvm_breakpoints_fire() {
    const std::string brand = cpu_brand();
    if (!brand.starts_with("QEMU TCG CPU")) return;
    VFIOLAB_ASSIGN_OR_SKIP(probe_vm, Vm::create({.vcpus = 1}));
    auto* probe = probe_vm->arena().make<HostDebugShared>();
    ASSERT_NE(probe, nullptr);
    kvm_debugregs regs = check(probe_vm->vcpu(0).debugregs());
    regs.db[0] = address(vfiolab_host_debug_probe);
    regs.dr7 = x86::kDr7Reset | x86::kDr7L0;
    check(probe_vm->vcpu(0).set_debugregs(regs));
    probe_vm->set_handler(x86::kVectorDebug, kvm_debug_registers::debug_exception_handler);
    check(probe_vm->vcpu(0).start(kvm_debug_registers::guest_probe_breakpoint, probe));
    auto done = probe_vm->vcpu(0).run_until_done();
    probe_vm->set_handler(x86::kVectorDebug, nullptr);
    check(std::move(done));
    if (probe->probe_debug_exceptions == 0) {
      GTEST_SKIP() << "this CPU is QEMU's TCG (\"" << brand
                   << "\"), and an instruction breakpoint KVM loaded into the guest's DR0/DR7 (KVM_SET_DEBUGREGS) did "
                      "not fire: this TCG does not arm the breakpoints of the DR7 it loads at VMRUN";
    }
  }

  void set_rip(const void* label) {
    kvm_regs regs = check(vcpu().regs());
    regs.rip = address(label);
    check(vcpu().set_regs(regs));
  }

  std::unique_ptr<Vm> vm_;
  HostDebugShared* shared_ = nullptr;
};

// KVM_GUESTDBG_USE_SW_BP: the guest's INT3 is the host's, a #BP exit with
// RIP still at the INT3; the host steps over it and the guest finishes.
// The guest has a #BP handler only to tell an INT3 KVM let through from
// other failures.
TEST_F(kvm_set_guest_debug_test, software_breakpoint) {
  vm_->set_handler(x86::kVectorBreakpoint, kvm_debug_registers::breakpoint_handler);
  check(vcpu().start(kvm_debug_registers::guest_int3, shared_));
  check(vcpu().set_guest_debug(guest_debug(KVM_GUESTDBG_USE_SW_BP)));
  auto result = vcpu().run_until_debug_exit();
  if (!result && shared_->guest_breakpoints > 0) {
    const std::string brand = cpu_brand();
    // (No addresses in the SKIP reason: the lanes' expectations hold it.)
    const std::string what =
        "with KVM_GUESTDBG_USE_SW_BP, the guest's INT3 reached the guest's own #BP handler instead of exiting to the "
        "host";
    if (brand.starts_with("QEMU TCG CPU")) {
      GTEST_SKIP() << what << "; this CPU is QEMU's TCG (\"" << brand
                   << "\"), whose SVM checks INT3 against the INTn intercept only, not the #BP exception intercept "
                      "KVM sets";
    }
    FAIL() << what << " (INT3 at " << hex(address(vfiolab_host_debug_int3)) << ", the handler's RIP "
           << hex(shared_->guest_breakpoint_rip) << ", CPU \"" << brand << "\")";
  }
  const auto exit = check(std::move(result));
  EXPECT_EQ(exit.exception, x86::kVectorBreakpoint) << "INT3: " << describe(exit);
  EXPECT_EQ(hex(exit.pc), hex(address(vfiolab_host_debug_int3))) << "INT3: " << describe(exit);
  fmt::print("# INT3: {}\n", describe(exit));
  const kvm_regs regs = check(vcpu().regs());
  ASSERT_EQ(hex(regs.rip), hex(address(vfiolab_host_debug_int3))) << "RIP after the INT3 exit";
  set_rip(vfiolab_host_debug_int3 + 1);  // INT3 is one byte
  check(vcpu().run_until_done());        // still enabled, and no INT3 left
}

// KVM_GUESTDBG_USE_HW_BP, an instruction breakpoint in each of DR0-DR3 in
// turn (globally enabled, R/W and LEN 0): a #DB fault before the
// instruction runs, DR6 naming that breakpoint alone.
TEST_F(kvm_set_guest_debug_test, instruction_breakpoints) {
  skip_unless_kvm_breakpoints_fire();
  if (IsSkipped() || HasFatalFailure()) return;
  check(vcpu().start(kvm_debug_registers::guest_instruction, shared_));
  for (unsigned n = 0; n < 4; ++n) {
    auto debug = guest_debug(KVM_GUESTDBG_USE_HW_BP, x86::kDr7Reset | x86::dr7_global_enable(n));
    debug.arch.debugreg[n] = address(vfiolab_host_debug_instruction);
    const std::string what = fmt::format("instruction breakpoint in DR{}", n);
    check(vcpu().set_guest_debug(debug));
    const auto exit = check(vcpu().run_until_debug_exit(), what);
    expect_exit(exit, x86::kVectorDebug, vfiolab_host_debug_instruction, x86::kDr6Reset | (x86::kDr6B0 << n), what);
    EXPECT_EQ(hex(exit.dr7), hex(debug.arch.debugreg[7])) << what << ": the DR7 the host set";
    EXPECT_EQ(shared_->executed, 0u) << what << ": the instruction ran before the #DB, which is a fault";
  }
  check(vcpu().set_guest_debug(kvm_guest_debug{}));  // off: the instruction runs once
  check(vcpu().run_until_done());
  EXPECT_EQ(shared_->executed, 1u) << "the instruction under the breakpoints, once resumed";
}

// A write watchpoint (R/W 01, LEN 11: four bytes) on each of DR0-DR3 in
// turn: a #DB trap after the store, which has written memory, DR6 naming
// that breakpoint alone. The host puts RIP back on the store each time.
TEST_F(kvm_set_guest_debug_test, write_watchpoints) {
  skip_unless_kvm_breakpoints_fire();
  if (IsSkipped() || HasFatalFailure()) return;
  check(vcpu().start(kvm_debug_registers::guest_write, shared_));
  for (unsigned n = 0; n < 4; ++n) {
    shared_->watched = 0;
    auto debug = guest_debug(KVM_GUESTDBG_USE_HW_BP,
                             x86::kDr7Reset | x86::dr7_global_enable(n) |
                                 x86::dr7_condition(n, x86::BreakOn::write, x86::BreakLength::four));
    debug.arch.debugreg[n] = address(&shared_->watched);
    const std::string what = fmt::format("write watchpoint in DR{}", n);
    check(vcpu().set_guest_debug(debug));
    const auto exit = check(vcpu().run_until_debug_exit(), what);
    expect_exit(exit, x86::kVectorDebug, vfiolab_host_debug_written, x86::kDr6Reset | (x86::kDr6B0 << n), what);
    EXPECT_EQ(hex(exit.dr7), hex(debug.arch.debugreg[7])) << what << ": the DR7 the host set";
    EXPECT_EQ(shared_->watched, kvm_debug_registers::kWatchedValue) << what << ": the store before the #DB trap";
    set_rip(vfiolab_host_debug_write);
  }
  shared_->watched = 0;
  check(vcpu().set_guest_debug(kvm_guest_debug{}));
  check(vcpu().run_until_done());
  EXPECT_EQ(shared_->watched, kvm_debug_registers::kWatchedValue) << "the store, once resumed without watchpoints";
}

// KVM_GUESTDBG_SINGLESTEP with KVM_GUESTDBG_BLOCKIRQ over OUT (the guest's
// call to the host, which KVM completes), STI, XOR, CPUID, MOV, WRMSR (TSC
// deadline), MOV from SS, MOV to SS, NOP, CLI, with a self-IPI pending: one exit after each instruction (BS in DR6), except
// the NOP in MOV SS's shadow, which runs with it, and no interrupt taken
// while stepping even with IF set; the guest takes it once it enables
// interrupts itself afterwards.
TEST_F(kvm_set_guest_debug_test, single_steps) {
  const int known = vm_->kvm().extension(KVM_CAP_SET_GUEST_DEBUG2);
  if (known <= 0 || !(known & KVM_GUESTDBG_BLOCKIRQ)) {
    GTEST_SKIP() << "this KVM does not offer KVM_GUESTDBG_BLOCKIRQ (KVM_CAP_SET_GUEST_DEBUG2 is " << known
                 << "): interrupts cannot be held off while stepping";
  }
  check(vcpu().start(kvm_debug_registers::guest_steps, shared_));
  // To the guest's call just before the first instruction: its OUT is the
  // first instruction stepped (KVM completes it on the next KVM_RUN).
  const Ucall call = check(vcpu().run());
  ASSERT_EQ(call.kind, UcallKind::sync) << "the guest's call before the first step";

  const char* const expected[] = {
      vfiolab_host_debug_step_0,  // after the OUT
      vfiolab_host_debug_step_1, vfiolab_host_debug_step_2, vfiolab_host_debug_step_3,
      vfiolab_host_debug_step_4, vfiolab_host_debug_step_5, vfiolab_host_debug_step_6,
      vfiolab_host_debug_step_8,  // not step_7: the NOP after MOV SS is in its shadow
      vfiolab_host_debug_step_9,
  };
  check(vcpu().set_guest_debug(guest_debug(KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ)));
  std::string seen;
  for (std::size_t i = 0; i < std::size(expected); ++i) {
    const std::string what = fmt::format("single step {}", i + 1);
    const auto exit = check(vcpu().run_until_debug_exit(), what);
    seen += fmt::format(" +{:#x}", exit.pc - address(vfiolab_host_debug_step_0));
    // Some TCGs (QEMU 7.2's) hold the step trap after STI back with the
    // interrupt shadow and stop only after the next instruction.
    if (expected[i] == vfiolab_host_debug_step_1 && exit.pc == address(vfiolab_host_debug_step_2) &&
        cpu_brand().starts_with("QEMU TCG CPU")) {
      GTEST_SKIP() << "this CPU is QEMU's TCG (\"" << cpu_brand()
                   << "\"), which does not trap a single step after an STI that opens an interrupt shadow: the step "
                      "from STI stopped after the XOR that follows it; the later steps are not checked";
    }
    expect_exit(exit, x86::kVectorDebug, expected[i], kDr6AfterSingleStep, what);
    if (exit.pc != address(expected[i])) {
      FAIL() << "single steps from the OUT before step_0 stopped at" << seen << "; the rest are not checked";
    }
  }
  fmt::print("# single steps stopped at (from step_0):{}\n", seen);  // +0x0: after the OUT
  check(vcpu().set_guest_debug(kvm_guest_debug{}));
  check(vcpu().run_until_done());
  EXPECT_EQ(shared_->interrupts_before_sti, 0u) << "the self-IPI was taken while single-stepping with BLOCKIRQ";
  EXPECT_EQ(shared_->interrupts_after_sti, 1u) << "the self-IPI, once the guest enabled interrupts";
}

// DR7.GD from the host: the guest's MOV from DR0 is a #DB fault (RAX not
// yet written) with BD in DR6; with guest debugging off again the guest's
// own debug registers are what it had: DR0 as set by KVM_SET_DEBUGREGS,
// DR6 and DR7 at their reset values.
TEST_F(kvm_set_guest_debug_test, general_detect) {
  constexpr std::uint64_t kGuestDr0 = 0x12345000;
  VFIOLAB_ASSIGN_OR_SKIP(regs, vcpu().debugregs());
  regs.db[0] = kGuestDr0;
  check(vcpu().set_debugregs(regs));
  check(vcpu().start(kvm_debug_registers::guest_dr_access, shared_));
  check(vcpu().set_guest_debug(guest_debug(KVM_GUESTDBG_USE_HW_BP, x86::kDr7Reset | x86::kDr7Gd)));
  auto result = vcpu().run_until_debug_exit();
  if (!result) {
    FAIL() << result.error().message() << "; with the host's DR7.GD set, the guest's MOV from DR0 ran and read "
           << hex(shared_->dr0_read);
  }
  const auto exit = *result;
  expect_exit(exit, x86::kVectorDebug, vfiolab_host_debug_dr_access, x86::kDr6Reset | x86::kDr6Bd, "MOV from DR0 under DR7.GD");
  EXPECT_EQ(hex(check(vcpu().regs()).rax), hex(kvm_debug_registers::kRaxBeforeDrAccess)) << "RAX at the #DB";
  check(vcpu().set_guest_debug(kvm_guest_debug{}));
  check(vcpu().run_until_done());
  EXPECT_EQ(hex(shared_->dr0_read), hex(kGuestDr0)) << "the guest's DR0, read once general detect was off";
  EXPECT_EQ(hex(shared_->dr6_at_end), hex(x86::kDr6Reset)) << "the guest's DR6 after the host's #DB";
  EXPECT_EQ(hex(shared_->dr7_at_end), hex(x86::kDr7Reset)) << "the guest's DR7 after the host's general detect";
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
