// What kvm_debug_registers_test's guest code (kvm_debug_registers_guest.cpp)
// and its host side share.
#pragma once

#include "vfiolab/kvm/guest_abi.h"

#include <cstdint>

namespace vfiolab::kvm_debug_registers {

// What the guest saw, in memory the host reads after the guest finished.
struct Observations {
  std::uint64_t dr6_at_start = 0;
  std::uint64_t dr7_at_start = 0;
  // DR6 as the #DB handler read it, and the #DB count, after each event.
  std::uint64_t dr6_single_step = 0;
  std::uint64_t debug_exceptions_single_step = 0;
  std::uint64_t dr6_icebp = 0;
  std::uint64_t debug_exceptions_icebp = 0;
  std::uint64_t invalid_opcodes_icebp = 0;  // #UD instead: a CPU that does not implement ICEBP
  std::uint64_t dr6_breakpoint = 0;
  std::uint64_t debug_exceptions_breakpoint = 0;
  std::uint64_t breakpoint_rip = 0;      // where the breakpoint #DB stopped
  std::uint64_t breakpoint_address = 0;  // where DR0 pointed
  std::uint64_t dr6_at_end = 0;
  std::uint64_t dr7_at_end = 0;
};

// Guest code: each records what it saw in `observations`.
void guest_read_at_start(Observations* observations);
void guest_single_step(Observations* observations);
void guest_icebp(Observations* observations);
void guest_breakpoint(Observations* observations);
void debug_exception_handler(kvm::InterruptFrame& frame);
// Counts a #UD and steps over the one-byte instruction that raised it.
void invalid_opcode_handler(kvm::InterruptFrame& frame);
// Sends an INIT IPI through the x2APIC to the APIC ID in `*target`.
void guest_send_init(std::uint32_t* target);

// ---- The host debugs the guest (KVM_SET_GUEST_DEBUG).

// What those guests share with the host, in guest memory.
struct HostDebugShared {
  std::uint32_t executed = 0;  // the instruction under the breakpoints adds 1 each time it runs
  std::uint32_t watched = 0;   // the store under the watchpoints writes kWatchedValue here
  std::uint64_t interrupts_before_sti = 0;  // self-IPIs taken by the end of the single steps
  std::uint64_t interrupts_after_sti = 0;   // ... and once interrupts were enabled afterwards
  std::uint64_t dr0_read = 0;               // what MOV from DR0 read once general detect was off
  std::uint64_t dr6_at_end = 0;
  std::uint64_t dr7_at_end = 0;
  // #BPs the guest's own handler took (none, when the host's INT3 exits
  // as it should), and the RIP of the last.
  std::uint64_t guest_breakpoints = 0;
  std::uint64_t guest_breakpoint_rip = 0;
  std::uint64_t probe_debug_exceptions = 0;  // guest_probe_breakpoint's #DBs
};
inline constexpr std::uint32_t kWatchedValue = 1234;
inline constexpr std::uint8_t kSelfIpiVector = 0xaa;
// RAX before the MOV from DR0 that general detect stops: still there when
// the #DB is a fault, as it must be.
inline constexpr std::uint64_t kRaxBeforeDrAccess = 0x5a5a5a5a5a5a5a5aull;

// Guest code, each with labels (extern "C" below) at the instructions the host
// stops at.
// Runs the instruction at vfiolab_host_debug_probe under the #DB handler
// above and counts the #DBs: with a breakpoint there that KVM loaded into
// the guest's DR0/DR7 (KVM_SET_DEBUGREGS), whether the CPU honours it.
void guest_probe_breakpoint(HostDebugShared* shared);
void guest_int3(HostDebugShared* shared);
void breakpoint_handler(kvm::InterruptFrame& frame);
void guest_instruction(HostDebugShared* shared);
void guest_write(HostDebugShared* shared);
// Sends itself an IPI while interrupts are disabled, calls the host (a sync
// ucall whose OUT is the instruction just before step_0, so the host finds
// RIP at step_0), then runs the instructions at step_0..9 (STI first, a MOV
// SS in the middle, CLI last), then enables interrupts a moment to take the
// IPI.
void guest_steps(HostDebugShared* shared);
void self_ipi_handler(kvm::InterruptFrame& frame);
void guest_dr_access(HostDebugShared* shared);

}  // namespace vfiolab::kvm_debug_registers

extern "C" {
extern const char vfiolab_host_debug_probe[];        // NOP
extern const char vfiolab_host_debug_int3[];         // INT3
extern const char vfiolab_host_debug_instruction[];  // INC of HostDebugShared::executed
extern const char vfiolab_host_debug_write[];        // the store to HostDebugShared::watched
extern const char vfiolab_host_debug_written[];      // the instruction after it
// The single-step sequence: STI, XOR, CPUID, MOV to ECX, WRMSR, MOV from SS,
// MOV to SS, NOP (in the MOV SS shadow), CLI; step 9 is the instruction after.
extern const char vfiolab_host_debug_step_0[], vfiolab_host_debug_step_1[], vfiolab_host_debug_step_2[],
    vfiolab_host_debug_step_3[], vfiolab_host_debug_step_4[], vfiolab_host_debug_step_5[],
    vfiolab_host_debug_step_6[], vfiolab_host_debug_step_7[], vfiolab_host_debug_step_8[],
    vfiolab_host_debug_step_9[];
extern const char vfiolab_host_debug_dr_access[];  // MOV from DR0
}
