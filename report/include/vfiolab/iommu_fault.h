// IOMMU faults as the kernel logs them (read with vfiolab/kmsg.h), so a test
// can check that a DMA it made fail was caught by the IOMMU for that device
// at that address. Three drivers' formats:
//   Intel VT-d:   "DMAR: [DMA Read NO_PASID] Request device [00:04.0] fault addr 0x1000 [fault reason 0x06] ..."
//   AMD-Vi:       "vfio-pci 0000:00:04.0: Event logged [IO_PAGE_FAULT domain=0x0002 address=0x1000 flags=0x0000]"
//                 "AMD-Vi: Event logged [IO_PAGE_FAULT device=0000:00:04.0 domain=... address=0x1000 ...]"
//   virtio-iommu: "virtio_iommu virtio0: page fault from EP 32 at 0x1000 [R]" (EP is the requester ID)
#pragma once

#include "vfiolab/kmsg.h"
#include "vfiolab/sysfs.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab {

struct IommuFault {
  // Who faulted: a BDF (Intel logs no segment: it reads as segment 0), or a
  // virtio-iommu endpoint ID (bus << 8 | device << 3 | function).
  std::optional<Bdf> device;
  std::optional<std::uint32_t> endpoint;
  std::uint64_t address = 0;
  std::string message;
};

// The fault a log message reports, if it reports one. Accepts the message
// with or without its "[  1.234567] " timestamp.
std::optional<IommuFault> parse_iommu_fault(std::string_view message);

// Whether the fault is from `bdf` at an address in the pages of
// [iova, iova + size). Drivers log page-aligned addresses, so the match is
// by page.
bool fault_matches(const IommuFault& fault, const Bdf& bdf, std::uint64_t iova, std::uint64_t size);

// Why the IOMMU translating `bdf` is known to log no faults, if it is one of
// those: QEMU's emulated AMD IOMMU (an ivhd whose PCI function carries
// QEMU's subsystem vendor 1af4) blocks a DMA without an IO_PAGE_FAULT event
// (measured with QEMU 7.2). nullopt for every other IOMMU.
std::optional<std::string> iommu_logs_no_faults(const Bdf& bdf, const std::filesystem::path& sys_root = "/sys");

// The interrupt the IOMMU translating `bdf` raises for a fault, by the name
// /proc/interrupts shows for it: Intel VT-d's "dmarN" (the unit's name,
// which is also its /sys/class/iommu name), virtio-iommu's event queue
// "virtioN-event" (its queue carries fault reports only; under QEMU 10 the
// device has one INTx line for all its queues instead, and no line of that
// name). Counted, it shows a fault no rate limit can hide, though not whose
// or where. nullopt for an IOMMU without such a line (AMD-Vi's event log
// also carries other events).
std::optional<std::string> iommu_fault_irq_name(const Bdf& bdf, const std::filesystem::path& sys_root = "/sys");

// How often the interrupt named `name` (an action name, the last column)
// fired, summed over every CPU and every line it is on, in the text of
// /proc/interrupts. nullopt when no line names it.
std::optional<std::uint64_t> interrupt_count(std::string_view proc_interrupts, std::string_view name);

}  // namespace vfiolab
