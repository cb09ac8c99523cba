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

}  // namespace vfiolab::kvm_debug_registers
