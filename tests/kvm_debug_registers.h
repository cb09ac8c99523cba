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

}  // namespace vfiolab::kvm_debug_registers
