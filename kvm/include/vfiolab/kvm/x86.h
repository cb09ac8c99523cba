// Architectural facts of x86-64 that the KVM library and its guests use:
// control and debug register bits, MSR numbers, local APIC registers, MSI
// message layout. Numbers are from the Intel SDM and AMD APM.
#pragma once

#include <cstdint>

namespace vfiolab::kvm::x86 {

// Control registers and EFER.
inline constexpr std::uint64_t kCr0Pe = 1ull << 0;   // protected mode
inline constexpr std::uint64_t kCr0Mp = 1ull << 1;
inline constexpr std::uint64_t kCr0Et = 1ull << 4;
inline constexpr std::uint64_t kCr0Ne = 1ull << 5;
inline constexpr std::uint64_t kCr0Wp = 1ull << 16;
inline constexpr std::uint64_t kCr0Pg = 1ull << 31;  // paging
inline constexpr std::uint64_t kCr4Pae = 1ull << 5;
inline constexpr std::uint64_t kEferSce = 1ull << 0;
inline constexpr std::uint64_t kEferLme = 1ull << 8;  // long mode enable
inline constexpr std::uint64_t kEferLma = 1ull << 10;  // long mode active
inline constexpr std::uint64_t kEferNx = 1ull << 11;

// RFLAGS.
inline constexpr std::uint64_t kRflagsFixed = 1ull << 1;  // always reads 1
inline constexpr std::uint64_t kRflagsTf = 1ull << 8;     // trap flag: single-step
inline constexpr std::uint64_t kRflagsIf = 1ull << 9;
inline constexpr std::uint64_t kRflagsRf = 1ull << 16;    // resume flag: skip an instruction breakpoint once

// Page table entries (4-level paging, 4 KiB pages).
inline constexpr std::uint64_t kPtePresent = 1ull << 0;
inline constexpr std::uint64_t kPteWritable = 1ull << 1;
inline constexpr std::uint64_t kPteWriteThrough = 1ull << 3;
inline constexpr std::uint64_t kPteCacheDisable = 1ull << 4;
inline constexpr std::uint64_t kPteAddressMask = 0x000ffffffffff000ull;
inline constexpr std::uint64_t kPageSize = 4096;

// Debug registers. DR6 and DR7 reset to these (SDM vol. 3, 18.2); in DR6
// the bits that read as 1 include BLD (11) and RTM (16), which are "active
// low": a #DB for a bus lock or in a transaction clears them.
inline constexpr std::uint64_t kDr6Reset = 0xffff0ff0;
inline constexpr std::uint64_t kDr7Reset = 0x400;
inline constexpr std::uint64_t kDr6B0 = 1ull << 0;  // B0..B3: breakpoint condition 0..3 met
inline constexpr std::uint64_t kDr6BreakpointMask = 0xf;
inline constexpr std::uint64_t kDr6Bd = 1ull << 13;   // debug register access detected
inline constexpr std::uint64_t kDr6Bs = 1ull << 14;   // single step
inline constexpr std::uint64_t kDr6Bt = 1ull << 15;   // task switch
inline constexpr std::uint64_t kDr6Bld = 1ull << 11;  // bus lock (active low)
inline constexpr std::uint64_t kDr6Rtm = 1ull << 16;  // in an RTM transaction (active low)
inline constexpr std::uint64_t kDr7L0 = 1ull << 0;    // local enable of breakpoint 0
inline constexpr std::uint64_t kDr7Gd = 1ull << 13;   // general detect: a MOV to or from a DR raises #DB
// R/W0 (bits 17:16) 00 = instruction execution, LEN0 (bits 19:18) 00 = 1 byte.
// Breakpoint n's local (L) and global (G) enable bits, and its condition
// field (R/Wn in bits 16 + 4n, LENn in the two bits above).
constexpr std::uint64_t dr7_local_enable(unsigned n) { return 1ull << (2 * n); }
constexpr std::uint64_t dr7_global_enable(unsigned n) { return 1ull << (2 * n + 1); }
enum class BreakOn : std::uint64_t { execution = 0, write = 1, io = 2, read_write = 3 };
enum class BreakLength : std::uint64_t { one = 0, two = 1, eight = 2, four = 3 };
constexpr std::uint64_t dr7_condition(unsigned n, BreakOn on, BreakLength length) {
  return (static_cast<std::uint64_t>(on) | (static_cast<std::uint64_t>(length) << 2)) << (16 + 4 * n);
}

// Exception and interrupt vectors.
inline constexpr std::uint8_t kVectorDebug = 1;
inline constexpr std::uint8_t kVectorNmi = 2;
inline constexpr std::uint8_t kVectorBreakpoint = 3;
inline constexpr std::uint8_t kVectorInvalidOpcode = 6;
inline constexpr std::uint8_t kVectorPageFault = 14;
inline constexpr std::uint8_t kVectorApicSpurious = 0xff;

// MSRs.
inline constexpr std::uint32_t kMsrApicBase = 0x1b;
inline constexpr std::uint64_t kApicBaseBsp = 1ull << 8;
inline constexpr std::uint64_t kApicBaseX2apic = 1ull << 10;  // EXTD
inline constexpr std::uint64_t kApicBaseEnable = 1ull << 11;
inline constexpr std::uint32_t kMsrEfer = 0xc0000080;
inline constexpr std::uint32_t kMsrTsc = 0x10;
inline constexpr std::uint32_t kMsrTscDeadline = 0x6e0;
inline constexpr std::uint32_t kMsrX2apicBase = 0x800;  // x2APIC register R is MSR 0x800 + R / 16

// Local APIC (xAPIC MMIO page and x2APIC MSRs share register offsets).
inline constexpr std::uint64_t kApicDefaultPhysicalBase = 0xfee00000;
inline constexpr std::uint32_t kApicId = 0x20;
inline constexpr std::uint32_t kApicTpr = 0x80;
inline constexpr std::uint32_t kApicEoi = 0xb0;
inline constexpr std::uint32_t kApicSvr = 0xf0;  // spurious vector register
inline constexpr std::uint32_t kApicSvrEnable = 1u << 8;
inline constexpr std::uint32_t kApicIcrLow = 0x300;
inline constexpr std::uint32_t kApicIcrHigh = 0x310;
inline constexpr std::uint32_t kApicIcrAssert = 1u << 14;      // level: assert (what every IPI but INIT deassert uses)
inline constexpr std::uint32_t kApicIcrToSelf = 1u << 18;      // destination shorthand 01: this APIC

// CPUID bits.
inline constexpr std::uint32_t kCpuid1EcxX2apic = 1u << 21;
inline constexpr std::uint32_t kCpuid7EcxBusLockDetect = 1u << 24;

// MSI messages as a local APIC receives them (SDM vol. 3, 11.11).
enum class DeliveryMode : std::uint32_t { fixed = 0, lowest_priority = 1, smi = 2, nmi = 4, init = 5, extint = 7 };

struct MsiMessage {
  std::uint64_t address = 0;
  std::uint32_t data = 0;
};

// An edge-triggered MSI to the APIC with ID `apic_id` in physical
// destination mode. IDs up to 255 are in the address's destination field;
// the bits above go to the address's upper half (bits 63:40), where KVM
// reads them once the VM has KVM_X2APIC_API_USE_32BIT_IDS
// (VmOptions::x2apic_32bit_ids); without it KVM ignores them.
constexpr MsiMessage msi_message(std::uint32_t apic_id, std::uint8_t vector, DeliveryMode mode = DeliveryMode::fixed) {
  return {kApicDefaultPhysicalBase | (static_cast<std::uint64_t>(apic_id & 0xff) << 12) |
              (static_cast<std::uint64_t>(apic_id & 0xffffff00u) << 32),
          vector | (static_cast<std::uint32_t>(mode) << 8)};
}

}  // namespace vfiolab::kvm::x86
