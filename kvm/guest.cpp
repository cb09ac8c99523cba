// The guest's runtime: its entry point, the interrupt stubs and their
// dispatcher, calls to the host and the local APIC. Built as guest code
// (see guest.h).
#include "vfiolab/kvm/guest.h"

namespace vfiolab::kvm {

extern "C" {
InterruptHandler vfiolab_kvm_interrupt_handlers[256];
void vfiolab_kvm_dispatch_interrupt(InterruptFrame* frame);
void vfiolab_kvm_guest_returned();
}

// Entry: RDI is the function, RSI its argument, RSP a 16-byte aligned stack
// top. When the function returns the guest reports done and halts.
//
// Interrupt stubs: one per vector, 16 bytes apart. Each pushes a zero where
// the CPU pushes no error code (all vectors but 8, 10-14, 17, 21, 29, 30),
// then the vector, and joins the common path, which saves the general
// registers, passes the frame to the dispatcher and returns with IRETQ.
// The CPU aligns RSP to 16 bytes before pushing its frame, and the 22
// quadwords pushed in all keep that alignment for the call.
asm(R"(
    .text
    .globl vfiolab_kvm_guest_start
    .type vfiolab_kvm_guest_start, @function
vfiolab_kvm_guest_start:
    mov %rdi, %rax
    mov %rsi, %rdi
    call *%rax
    call vfiolab_kvm_guest_returned
1:  hlt
    jmp 1b
    .size vfiolab_kvm_guest_start, . - vfiolab_kvm_guest_start

    .p2align 4
    .globl vfiolab_kvm_interrupt_stubs
    .type vfiolab_kvm_interrupt_stubs, @function
vfiolab_kvm_interrupt_stubs:
    .set vector, 0
    .rept 256
    .p2align 4
    .if vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30
    .else
    pushq $0
    .endif
    pushq $vector
    jmp vfiolab_kvm_interrupt_common
    .set vector, vector + 1
    .endr
    .size vfiolab_kvm_interrupt_stubs, . - vfiolab_kvm_interrupt_stubs

vfiolab_kvm_interrupt_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    call vfiolab_kvm_dispatch_interrupt
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq
)");

namespace {
// Whether apic_enable() chose x2APIC; every vCPU of a VM uses one mode.
bool apic_in_x2apic_mode;

volatile std::uint32_t* apic_mmio(std::uint32_t reg) {
  return reinterpret_cast<volatile std::uint32_t*>(x86::kApicDefaultPhysicalBase + reg);
}
}  // namespace

extern "C" void vfiolab_kvm_dispatch_interrupt(InterruptFrame* frame) {
  InterruptHandler handler = vfiolab_kvm_interrupt_handlers[frame->vector & 0xff];
  if (handler) {
    handler(*frame);
    return;
  }
  guest::fail(__FILE__, __LINE__, "unexpected interrupt or exception (vector, error code, rip)", frame->vector,
              frame->error_code, frame->rip);
}

extern "C" void vfiolab_kvm_ignore_interrupt(InterruptFrame&) {}

extern "C" void vfiolab_kvm_guest_returned() { guest::ucall(UcallKind::done); }

namespace guest {

void ucall(UcallKind kind, std::uint64_t value) {
  Ucall call;
  call.kind = kind;
  call.values[0] = value;
  asm volatile("outl %%eax, %%dx" ::"a"(0u), "d"(kUcallPort), "D"(&call) : "memory");
}

void fail(const char* file, std::uint32_t line, const char* text, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  Ucall call;
  call.kind = UcallKind::failure;
  call.file = file;
  call.line = line;
  call.text = text;
  call.values[0] = a;
  call.values[1] = b;
  call.values[2] = c;
  for (;;) {  // the host does not resume a failed guest; if it does, stay here
    asm volatile("outl %%eax, %%dx" ::"a"(0u), "d"(kUcallPort), "D"(&call) : "memory");
    asm volatile("cli; hlt");
  }
}

std::uint32_t apic_read(std::uint32_t reg) {
  if (apic_in_x2apic_mode) return static_cast<std::uint32_t>(rdmsr(x86::kMsrX2apicBase + reg / 16));
  return *apic_mmio(reg);
}

void apic_write(std::uint32_t reg, std::uint32_t value) {
  if (apic_in_x2apic_mode) {
    wrmsr(x86::kMsrX2apicBase + reg / 16, value);
  } else {
    *apic_mmio(reg) = value;
  }
}

void apic_enable(bool x2apic) {
  std::uint64_t base = rdmsr(x86::kMsrApicBase);
  base |= x86::kApicBaseEnable;
  if (x2apic) base |= x86::kApicBaseX2apic;
  wrmsr(x86::kMsrApicBase, base);
  apic_in_x2apic_mode = x2apic;
  apic_write(x86::kApicTpr, 0);
  apic_write(x86::kApicSvr, x86::kApicSvrEnable | x86::kVectorApicSpurious);
}

void apic_eoi() { apic_write(x86::kApicEoi, 0); }

std::uint32_t apic_id() {
  const std::uint32_t id = apic_read(x86::kApicId);
  return apic_in_x2apic_mode ? id : id >> 24;
}

}  // namespace guest
}  // namespace vfiolab::kvm
