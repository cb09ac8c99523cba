// Guest code of kvm_debug_registers_test: DR6 and DR7 at start, and three
// debug exceptions (a single step, ICEBP, an instruction breakpoint), each
// in a guest of its own and seen by a #DB handler that records DR6 and puts it back to its reset
// value, as Linux does since "x86/traps: Initialize DR6 by writing its
// architectural reset value".
#include "kvm_debug_registers.h"

#include "vfiolab/kvm/guest.h"

namespace vfiolab::kvm_debug_registers {
namespace {

using namespace kvm;

volatile std::uint64_t last_dr6;
volatile std::uint64_t last_rip;
volatile std::uint64_t debug_exceptions;
volatile std::uint64_t invalid_opcodes;

// An instruction breakpoint's target: a function of its own, never inlined,
// so DR0 can name its first instruction.
[[gnu::noinline]] void breakpoint_target() { asm volatile("nop"); }

}  // namespace

void debug_exception_handler(InterruptFrame& frame) {
  last_dr6 = guest::read_dr6();
  last_rip = frame.rip;
  debug_exceptions = debug_exceptions + 1;
  guest::write_dr6(x86::kDr6Reset);
  guest::write_dr7(x86::kDr7Reset);  // the breakpoint fired once: that is enough
  frame.rflags &= ~x86::kRflagsTf;   // end single-stepping
  frame.rflags |= x86::kRflagsRf;    // an instruction breakpoint is a fault: let the instruction run
}

void invalid_opcode_handler(InterruptFrame& frame) {
  invalid_opcodes = invalid_opcodes + 1;
  frame.rip += 1;
}

void guest_read_at_start(Observations* observations) {
  observations->dr6_at_start = guest::read_dr6();
  observations->dr7_at_start = guest::read_dr7();
}

// POPF sets TF: the #DB comes after the next instruction.
void guest_single_step(Observations* observations) {
  debug_exceptions = 0;
  asm volatile("pushfq; orq %0, (%%rsp); popfq; nop; nop" ::"i"(x86::kRflagsTf) : "memory", "cc");
  observations->dr6_single_step = last_dr6;
  observations->debug_exceptions_single_step = debug_exceptions;
  observations->dr6_at_end = guest::read_dr6();
  observations->dr7_at_end = guest::read_dr7();
}

// ICEBP (INT1, opcode 0xf1): a #DB trap that is neither a breakpoint nor a
// single step.
void guest_icebp(Observations* observations) {
  debug_exceptions = 0;
  invalid_opcodes = 0;
  asm volatile(".byte 0xf1" ::: "memory");
  observations->dr6_icebp = last_dr6;
  observations->debug_exceptions_icebp = debug_exceptions;
  observations->invalid_opcodes_icebp = invalid_opcodes;
  observations->dr6_at_end = guest::read_dr6();
  observations->dr7_at_end = guest::read_dr7();
}

// An instruction breakpoint in DR0, enabled locally in DR7 (R/W0 and LEN0
// zero: execution, one byte).
void guest_breakpoint(Observations* observations) {
  debug_exceptions = 0;
  const auto target = reinterpret_cast<std::uint64_t>(&breakpoint_target);
  observations->breakpoint_address = target;
  guest::write_dr0(target);
  guest::write_dr7(x86::kDr7Reset | x86::kDr7L0);
  breakpoint_target();
  observations->dr6_breakpoint = last_dr6;
  observations->debug_exceptions_breakpoint = debug_exceptions;
  observations->breakpoint_rip = last_rip;
  observations->dr6_at_end = guest::read_dr6();
  observations->dr7_at_end = guest::read_dr7();
}

void guest_send_init(std::uint32_t* target) {
  guest::apic_enable(true);
  // x2APIC: ICR is one MSR, destination in the high half; INIT, level assert.
  constexpr std::uint64_t kIcrInit = 5u << 8;
  constexpr std::uint64_t kIcrAssert = 1u << 14;
  guest::wrmsr(x86::kMsrX2apicBase + x86::kApicIcrLow / 16,
               (static_cast<std::uint64_t>(*target) << 32) | kIcrInit | kIcrAssert);
}

// ---- Guests the host debugs. Each is noipa, so the compiler neither
// inlines nor clones it: every label is defined once. The host resumes a
// guest at some of these labels, so each asm statement is one block the
// compiler cannot split.

namespace {
volatile std::uint64_t self_ipis;
volatile std::uint64_t breakpoints;
volatile std::uint64_t breakpoint_rip;
}  // namespace

// #BP is a trap: the frame's RIP is past the INT3.
void breakpoint_handler(InterruptFrame& frame) {
  breakpoints = breakpoints + 1;
  breakpoint_rip = frame.rip;
}

[[gnu::noipa]] void guest_probe_breakpoint(HostDebugShared* shared) {
  debug_exceptions = 0;
  asm volatile(".globl vfiolab_host_debug_probe\nvfiolab_host_debug_probe: nop" ::: "memory");
  shared->probe_debug_exceptions = debug_exceptions;
}

[[gnu::noipa]] void guest_int3(HostDebugShared* shared) {
  breakpoints = 0;
  asm volatile(".globl vfiolab_host_debug_int3\nvfiolab_host_debug_int3: int3" ::: "memory");
  shared->guest_breakpoints = breakpoints;
  shared->guest_breakpoint_rip = breakpoint_rip;
}

[[gnu::noipa]] void guest_instruction(HostDebugShared* shared) {
  asm volatile(".globl vfiolab_host_debug_instruction\nvfiolab_host_debug_instruction: incl %0"
               : "+m"(shared->executed));
}

[[gnu::noipa]] void guest_write(HostDebugShared* shared) {
  asm volatile(
      "movl %1, %%eax\n"
      ".globl vfiolab_host_debug_write\nvfiolab_host_debug_write: movl %%eax, %0\n"
      ".globl vfiolab_host_debug_written\nvfiolab_host_debug_written: nop"
      : "=m"(shared->watched)
      : "i"(kWatchedValue)
      : "rax");
}

void self_ipi_handler(InterruptFrame&) {
  self_ipis = self_ipis + 1;
  guest::apic_eoi();
}

[[gnu::noipa]] void guest_steps(HostDebugShared* shared) {
  self_ipis = 0;
  guest::apic_enable(true);
  // Interrupts are disabled: the IPI waits in the IRR.
  guest::apic_write(x86::kApicIcrLow, x86::kApicIcrToSelf | x86::kApicIcrAssert | kSelfIpiVector);
  Ucall call;
  call.kind = UcallKind::sync;
  std::uint64_t rax = 0, rdx = kUcallPort;  // the OUT's port, then what the sequence leaves
  asm volatile(
      "outl %%eax, %%dx\n"
      ".globl vfiolab_host_debug_step_0\nvfiolab_host_debug_step_0: sti\n"
      ".globl vfiolab_host_debug_step_1\nvfiolab_host_debug_step_1: xor %%eax, %%eax\n"
      ".globl vfiolab_host_debug_step_2\nvfiolab_host_debug_step_2: cpuid\n"
      ".globl vfiolab_host_debug_step_3\nvfiolab_host_debug_step_3: movl %[msr], %%ecx\n"
      ".globl vfiolab_host_debug_step_4\nvfiolab_host_debug_step_4: wrmsr\n"
      ".globl vfiolab_host_debug_step_5\nvfiolab_host_debug_step_5: mov %%ss, %%eax\n"
      ".globl vfiolab_host_debug_step_6\nvfiolab_host_debug_step_6: mov %%eax, %%ss\n"
      ".globl vfiolab_host_debug_step_7\nvfiolab_host_debug_step_7: nop\n"
      ".globl vfiolab_host_debug_step_8\nvfiolab_host_debug_step_8: cli\n"
      ".globl vfiolab_host_debug_step_9\nvfiolab_host_debug_step_9: nop\n"
      : "+a"(rax), "+d"(rdx)
      : "D"(&call), [msr] "i"(x86::kMsrTscDeadline)
      : "rbx", "rcx", "memory");
  shared->interrupts_before_sti = self_ipis;
  asm volatile("sti; nop; nop; cli" ::: "memory");
  shared->interrupts_after_sti = self_ipis;
}

[[gnu::noipa]] void guest_dr_access(HostDebugShared* shared) {
  std::uint64_t value;
  asm volatile(
      "movabs %1, %%rax\n"
      ".globl vfiolab_host_debug_dr_access\nvfiolab_host_debug_dr_access: mov %%dr0, %%rax"
      : "=&a"(value)
      : "i"(kRaxBeforeDrAccess));
  shared->dr0_read = value;
  shared->dr6_at_end = guest::read_dr6();
  shared->dr7_at_end = guest::read_dr7();
}

}  // namespace vfiolab::kvm_debug_registers
