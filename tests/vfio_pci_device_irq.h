// What vfio_pci_device_irq_test's guest code (vfio_pci_device_irq_guest.cpp)
// and its host side share.
#pragma once

#include "vfiolab/kvm/guest_abi.h"

#include <cstdint>

namespace vfiolab::device_irq {

inline constexpr std::uint8_t kDeviceVector = 0x40;  // where the device's MSI route points
inline constexpr std::uint8_t kWakeVector = 0x41;    // the host's "look at the stop flag"
inline constexpr std::uint32_t kMaxVcpus = 16;

// Per vCPU (by APIC ID), each on its own cache line.
struct alignas(64) Arrivals {
  volatile std::uint64_t fixed = 0;     // device interrupts with delivery mode fixed
  volatile std::uint64_t nmi = 0;       // ... and as NMIs
  volatile std::uint64_t last_tsc = 0;  // TSC at the latest handler's entry
};

struct GuestState {
  bool x2apic = true;
  bool halt = true;  // wait in HLT, or spin
  volatile std::uint32_t ready = 0;  // vCPUs with their APIC on and interrupts enabled
  volatile std::uint32_t stop = 0;
  Arrivals arrivals[kMaxVcpus];
};

// Guest code.
void guest_main(GuestState* state);
void device_interrupt_handler(kvm::InterruptFrame& frame);
void nmi_handler(kvm::InterruptFrame& frame);
void wake_handler(kvm::InterruptFrame& frame);

}  // namespace vfiolab::device_irq
