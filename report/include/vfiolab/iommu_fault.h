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

// Intel VT-d's fault handler (dmar_fault, as of Linux 6.12) prints through
// one rate limit (DEFAULT_RATELIMIT_INTERVAL and _BURST: 10 per 5 s, the
// window beginning with the first call after the previous one ended), and
// asks it once for its "DRHD: handling fault status reg" line, once per
// fault record it prints, and once more for the loop iteration that finds
// no further record: a fault costs three, of which two show in the log.
// Given the log so far, when the window open at `now_usec` cannot take
// `needed` more: the time it ends (usec). nullopt when it can, or when
// nothing in the log is from that handler. A kernel that counts otherwise
// makes this a guess; callers still check the log afterwards.
inline constexpr std::uint64_t kIntelFaultLogWindowUsec = 5'000'000;
inline constexpr int kIntelFaultLogBurst = 10;
std::optional<std::uint64_t> intel_fault_log_full_until(const std::vector<LogRecord>& records, std::uint64_t now_usec,
                                                        int needed);

}  // namespace vfiolab
