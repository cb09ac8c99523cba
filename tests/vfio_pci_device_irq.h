// What vfio_pci_device_irq_test's guest code (vfio_pci_device_irq_guest.cpp)
// and its host side share.
#pragma once

#include "vfiolab/kvm/guest_abi.h"

#include <cstdint>

namespace vfiolab::device_irq {

inline constexpr std::uint8_t kDeviceVector = 0x40;  // where the device's MSI route points (unless random)
inline constexpr std::uint8_t kWakeVector = 0x41;    // the host's "look at the stop flag"
inline constexpr std::uint32_t kMaxVcpus = 32;

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
  std::uint32_t vcpu_count = 0;
  std::uint32_t apic_ids[kMaxVcpus] = {};  // arrivals[i] counts those at APIC ID apic_ids[i]
  Arrivals arrivals[kMaxVcpus];
  Arrivals stray;  // arrivals at an APIC ID not in apic_ids
};

// Guest code.
void guest_main(GuestState* state);
void device_interrupt_handler(kvm::InterruptFrame& frame);
void nmi_handler(kvm::InterruptFrame& frame);
void wake_handler(kvm::InterruptFrame& frame);

}  // namespace vfiolab::device_irq
