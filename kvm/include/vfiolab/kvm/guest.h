// For code that runs inside the guest. Such code lives in translation units
// built with vfiolab_kvm_guest_sources() (kvm/CMakeLists.txt): no SSE, no
// red zone (interrupts arrive on the same stack), no stack protector (no
// TLS in the guest), no sanitizers, and no calls into libc (the guest maps
// the test binary, not its shared libraries).
#pragma once

#ifndef VFIOLAB_KVM_GUEST_CODE
#error "vfiolab/kvm/guest.h is for guest translation units (vfiolab_kvm_guest_sources in CMake)"
#endif

#include "vfiolab/kvm/guest_abi.h"
#include "vfiolab/kvm/x86.h"

#include <cstdint>

namespace vfiolab::kvm::guest {

// Calls to the host.
void ucall(UcallKind kind, std::uint64_t value = 0);
[[noreturn]] void fail(const char* file, std::uint32_t line, const char* text, std::uint64_t a = 0,
                       std::uint64_t b = 0, std::uint64_t c = 0);

// The local APIC, in xAPIC (MMIO) or x2APIC (MSR) mode: software-enabled,
// TPR 0, spurious vector 0xff.
void apic_enable(bool x2apic);
std::uint32_t apic_read(std::uint32_t reg);
void apic_write(std::uint32_t reg, std::uint32_t value);
void apic_eoi();
std::uint32_t apic_id();

// Instructions.
[[gnu::always_inline]] static inline std::uint64_t rdmsr(std::uint32_t msr) {
  std::uint32_t low, high;
  asm volatile("rdmsr" : "=a"(low), "=d"(high) : "c"(msr));
  return (static_cast<std::uint64_t>(high) << 32) | low;
}
[[gnu::always_inline]] static inline void wrmsr(std::uint32_t msr, std::uint64_t value) {
  asm volatile("wrmsr" ::"c"(msr), "a"(static_cast<std::uint32_t>(value)),
               "d"(static_cast<std::uint32_t>(value >> 32))
               : "memory");
}
[[gnu::always_inline]] static inline std::uint64_t rdtsc() {
  std::uint32_t low, high;
  asm volatile("rdtsc" : "=a"(low), "=d"(high));
  return (static_cast<std::uint64_t>(high) << 32) | low;
}
[[gnu::always_inline]] static inline std::uint64_t read_dr6() {
  std::uint64_t value;
  asm volatile("mov %%dr6, %0" : "=r"(value));
  return value;
}
[[gnu::always_inline]] static inline std::uint64_t read_dr7() {
  std::uint64_t value;
  asm volatile("mov %%dr7, %0" : "=r"(value));
  return value;
}
[[gnu::always_inline]] static inline void write_dr0(std::uint64_t value) { asm volatile("mov %0, %%dr0" ::"r"(value)); }
[[gnu::always_inline]] static inline void write_dr6(std::uint64_t value) { asm volatile("mov %0, %%dr6" ::"r"(value)); }
[[gnu::always_inline]] static inline void write_dr7(std::uint64_t value) { asm volatile("mov %0, %%dr7" ::"r"(value)); }
[[gnu::always_inline]] static inline void enable_interrupts() { asm volatile("sti" ::: "memory"); }
[[gnu::always_inline]] static inline void disable_interrupts() { asm volatile("cli" ::: "memory"); }
// STI's one-instruction shadow makes the pair atomic: an interrupt that is
// already pending wakes the HLT instead of slipping in before it.
[[gnu::always_inline]] static inline void enable_interrupts_and_halt() { asm volatile("sti; hlt" ::: "memory"); }
[[gnu::always_inline]] static inline void pause() { asm volatile("pause" ::: "memory"); }

}  // namespace vfiolab::kvm::guest

#define VFIOLAB_GUEST_STRINGIFY_(x) #x
#define VFIOLAB_GUEST_STRINGIFY(x) VFIOLAB_GUEST_STRINGIFY_(x)

// Stops the guest and fails the test on the host with file, line and text.
#define GUEST_ASSERT(condition)                                                       \
  do {                                                                                \
    if (!(condition)) ::vfiolab::kvm::guest::fail(__FILE__, __LINE__, #condition);    \
  } while (0)
#define GUEST_ASSERT_EQ(a, b)                                                                          \
  do {                                                                                                 \
    const auto vfiolab_a_ = (a);                                                                       \
    const auto vfiolab_b_ = (b);                                                                       \
    if (!(vfiolab_a_ == vfiolab_b_))                                                                   \
      ::vfiolab::kvm::guest::fail(__FILE__, __LINE__, #a " == " #b, static_cast<std::uint64_t>(vfiolab_a_), \
                                  static_cast<std::uint64_t>(vfiolab_b_));                             \
  } while (0)
#define GUEST_SYNC(value) ::vfiolab::kvm::guest::ucall(::vfiolab::kvm::UcallKind::sync, (value))
