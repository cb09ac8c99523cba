// What the host and guest code share: the guest-to-host call ("ucall"), the
// frame an interrupt handler sees, and the guest's entry points. Guest and
// host run in one address space view: every pointer here means the same
// thing on both sides (see vm.h, "Guest memory").
#pragma once

#include <cstdint>

namespace vfiolab::kvm {

// The guest calls the host with an `out` to this port, RDI pointing at a
// Ucall; KVM exits to the host with KVM_EXIT_IO.
inline constexpr std::uint16_t kUcallPort = 0x7e7e;

enum class UcallKind : std::uint32_t {
  done = 1,     // the guest function returned
  sync = 2,     // a checkpoint; values[0] says which; the host may resume
  failure = 3,  // a GUEST_ASSERT failed or an unexpected interrupt arrived
};

struct Ucall {
  UcallKind kind = UcallKind::done;
  std::uint32_t line = 0;
  const char* file = nullptr;  // string literals of the test binary (mapped in the guest)
  const char* text = nullptr;
  std::uint64_t values[4] = {};
};

// What the interrupt stubs push (lowest address first): the general
// registers, the vector, the error code (0 when the CPU pushes none), then
// the CPU's frame. A handler may change rip, rflags and the registers; they
// are restored on return.
struct InterruptFrame {
  std::uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
  std::uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
  std::uint64_t vector;
  std::uint64_t error_code;
  std::uint64_t rip, cs, rflags, rsp, ss;
};

using InterruptHandler = void (*)(InterruptFrame& frame);
using GuestFunction = void (*)(void* argument);

extern "C" {
// Where a vCPU starts: calls RDI(RSI) on the stack the host set up, then
// reports done (kvm/guest.cpp).
void vfiolab_kvm_guest_start();
// 256 interrupt stubs, kInterruptStubSize bytes apart, for the IDT.
extern const char vfiolab_kvm_interrupt_stubs[];
// A handler that does nothing (the APIC's spurious vector gets it).
void vfiolab_kvm_ignore_interrupt(InterruptFrame& frame);
// Handlers by vector; the host fills them before running (Vm::set_handler).
// One table per process: every VM of a test shares its guest code.
extern InterruptHandler vfiolab_kvm_interrupt_handlers[256];
}
inline constexpr std::uint64_t kInterruptStubSize = 16;

}  // namespace vfiolab::kvm
