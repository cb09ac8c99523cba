// Guest code of vfio_pci_device_irq_test: each vCPU turns its local APIC on,
// then waits for interrupts (HLT or a PAUSE loop) until the host says stop;
// the handlers stamp the TSC and count arrivals per vCPU.
#include "vfio_pci_device_irq.h"

#include "vfiolab/kvm/guest.h"

namespace vfiolab::device_irq {
namespace {

using namespace kvm;

GuestState* guest_state;  // the same for every vCPU

Arrivals& my_arrivals() {
  const std::uint32_t id = guest::apic_id();
  for (std::uint32_t i = 0; i < guest_state->vcpu_count && i < kMaxVcpus; ++i) {
    if (guest_state->apic_ids[i] == id) return guest_state->arrivals[i];
  }
  return guest_state->stray;
}

}  // namespace

void guest_main(GuestState* state) {
  guest_state = state;
  guest::apic_enable(state->x2apic);
  __atomic_fetch_add(&state->ready, 1, __ATOMIC_SEQ_CST);
  if (state->halt) {
    // The flag is checked with interrupts off, and STI's one-instruction
    // shadow lets HLT start before anything is delivered, so the host's
    // wake-up MSI cannot slip in between the check and the halt.
    guest::disable_interrupts();
    while (!state->stop) {
      guest::enable_interrupts_and_halt();
      guest::disable_interrupts();
    }
  } else {
    guest::enable_interrupts();
    while (!state->stop) guest::pause();
  }
  guest::disable_interrupts();
}

void device_interrupt_handler(InterruptFrame&) {
  const std::uint64_t now = guest::rdtsc();
  Arrivals& arrivals = my_arrivals();
  arrivals.last_tsc = now;
  arrivals.fixed = arrivals.fixed + 1;
  guest::apic_eoi();
}

void nmi_handler(InterruptFrame&) {  // NMIs need no EOI
  const std::uint64_t now = guest::rdtsc();
  Arrivals& arrivals = my_arrivals();
  arrivals.last_tsc = now;
  arrivals.nmi = arrivals.nmi + 1;
}

void wake_handler(InterruptFrame&) { guest::apic_eoi(); }

}  // namespace vfiolab::device_irq
