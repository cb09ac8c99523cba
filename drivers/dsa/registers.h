// Intel Data Streaming Accelerator (DSA, "idxd"): the MMIO registers, the
// descriptor and completion record formats, and pure encoders for them.
//
// Facts come from the Intel DSA Architecture Specification and the Linux
// kernel's include/uapi/linux/idxd.h and drivers/dma/idxd/registers.h; the
// layouts are written out here (not included) and checked below.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vfiolab::dsa {

// ---------------------------------------------------------------------------
// BARs and BAR0 registers (byte offsets).
inline constexpr std::uint32_t kMmioBar = 0;    // registers
inline constexpr std::uint32_t kPortalBar = 2;  // WQ portals

inline constexpr std::size_t kRegVersion = 0x00;    // 32-bit: major in bits 7:4, minor in 3:0
inline constexpr std::size_t kRegGenCap = 0x10;     // 64-bit
inline constexpr std::size_t kRegWqCap = 0x20;      // 64-bit
inline constexpr std::size_t kRegGrpCap = 0x30;     // 64-bit
inline constexpr std::size_t kRegEngCap = 0x38;     // 64-bit
inline constexpr std::size_t kRegOpCap = 0x40;      // 4 x 64-bit: bit n set = opcode n supported
inline constexpr std::size_t kRegOffsets = 0x60;    // 2 x 64-bit: where the tables are
inline constexpr std::size_t kRegGenCfg = 0x80;     // 32-bit
inline constexpr std::size_t kRegGenCtrl = 0x88;    // 32-bit
inline constexpr std::size_t kRegGenStats = 0x90;   // 32-bit
inline constexpr std::size_t kRegIntCause = 0x98;   // 32-bit
inline constexpr std::size_t kRegCmd = 0xa0;        // 32-bit
inline constexpr std::size_t kRegCmdSts = 0xa8;     // 32-bit
inline constexpr std::size_t kRegCmdCap = 0xb0;     // 32-bit: bit n set = command n supported
inline constexpr std::size_t kRegSwErr = 0xc0;      // 4 x 64-bit

// GENCAP fields.
inline constexpr std::uint64_t kGenCapBlockOnFault = 1ull << 0;
inline constexpr std::uint64_t kGenCapCmdCap = 1ull << 4;  // CMDCAP is implemented
inline constexpr std::uint64_t kGenCapConfigEnable = 1ull << 31;  // groups and WQs are configurable
constexpr unsigned gencap_max_xfer_shift(std::uint64_t gencap) { return (gencap >> 16) & 0x1f; }
constexpr unsigned gencap_max_batch_shift(std::uint64_t gencap) { return (gencap >> 21) & 0xf; }

// WQCAP fields.
constexpr unsigned wqcap_total_size(std::uint64_t wqcap) { return wqcap & 0xffff; }
constexpr unsigned wqcap_num_wqs(std::uint64_t wqcap) { return (wqcap >> 16) & 0xff; }
// Bytes of one WQCFG entry: 32 << the 4-bit field at 27:24.
constexpr unsigned wqcap_wqcfg_bytes(std::uint64_t wqcap) { return 32u << ((wqcap >> 24) & 0xf); }
inline constexpr std::uint64_t kWqCapSharedMode = 1ull << 48;
inline constexpr std::uint64_t kWqCapDedicatedMode = 1ull << 49;
inline constexpr std::uint64_t kWqCapOpConfig = 1ull << 54;  // WQCFG carries an operation bitmap

// GRPCAP and ENGCAP fields.
constexpr unsigned grpcap_num_groups(std::uint64_t grpcap) { return grpcap & 0xff; }
constexpr unsigned grpcap_total_read_buffers(std::uint64_t grpcap) { return (grpcap >> 8) & 0xff; }
constexpr unsigned engcap_num_engines(std::uint64_t engcap) { return engcap & 0xff; }

// OFFSETS: 16-bit fields in units of 0x100 bytes from the start of BAR0.
inline constexpr std::size_t kTableUnit = 0x100;
constexpr std::size_t offsets_grpcfg(std::uint64_t low) { return (low & 0xffff) * kTableUnit; }
constexpr std::size_t offsets_wqcfg(std::uint64_t low) { return ((low >> 16) & 0xffff) * kTableUnit; }
constexpr std::size_t offsets_msix_perm(std::uint64_t low) { return ((low >> 32) & 0xffff) * kTableUnit; }

// GRPCFG table: one 64-byte entry per group (WQ bitmap, engine bitmap, flags).
inline constexpr std::size_t kGrpCfgEntryBytes = 64;
inline constexpr std::size_t kGrpCfgWordCount = 6;  // 64-bit words: wqs[4], engines, flags
// MSI-X permissions table: one 8-byte entry per vector, 32 bits used.
inline constexpr std::size_t kMsixPermEntryBytes = 8;
// Portals: each WQ has four 4 KiB pages in BAR2; the first is the unlimited
// MSI-X portal, the one a dedicated WQ takes MOVDIR64B stores on.
inline constexpr std::size_t kPortalBytesPerWq = 4 * 0x1000;

// GENCTRL: interrupt on software errors and on entering the halt state.
inline constexpr std::uint32_t kGenCtrlSoftErrIntEnable = 1u << 0;
inline constexpr std::uint32_t kGenCtrlHaltIntEnable = 1u << 1;

// GENSTATS: the device state in bits 1:0.
enum class DeviceState : std::uint8_t { disabled = 0, enabled = 1, draining = 2, halted = 3 };
constexpr DeviceState genstats_state(std::uint32_t genstats) { return static_cast<DeviceState>(genstats & 0x3); }
constexpr std::string_view device_state_name(DeviceState state) {
  switch (state) {
    case DeviceState::disabled: return "disabled";
    case DeviceState::enabled: return "enabled";
    case DeviceState::draining: return "draining";
    case DeviceState::halted: return "halted";
  }
  return "?";
}

// SWERR: the first 64-bit word says whether an error was logged and which.
constexpr bool swerr_valid(std::uint64_t word0) { return word0 & 1; }
constexpr std::uint8_t swerr_code(std::uint64_t word0) { return (word0 >> 8) & 0xff; }
inline constexpr std::uint64_t kSwErrAck = 0x3;  // write 1s to valid and overflow to clear them

// ---------------------------------------------------------------------------
// Commands (CMD register): operand in bits 19:0, command in 24:20, and bit
// 31 asks for an interrupt on vector 0 when the command completes.
enum class Command : std::uint8_t {
  enable_device = 1,
  disable_device = 2,
  drain_all = 3,
  abort_all = 4,
  reset_device = 5,
  enable_wq = 6,
  disable_wq = 7,
  drain_wq = 8,
  abort_wq = 9,
  reset_wq = 10,
  drain_pasid = 11,
  abort_pasid = 12,
  request_int_handle = 13,
  release_int_handle = 14,
};

constexpr std::uint32_t encode_cmd(Command command, std::uint32_t operand, bool interrupt = false) {
  return (operand & 0xfffffu) | (static_cast<std::uint32_t>(command) & 0x1fu) << 20 | (interrupt ? 1u << 31 : 0u);
}
// Enable WQ takes the WQ index; disable/drain/abort/reset WQ take a bitmap
// of 16 WQs in bits 15:0 and which block of 16 in bits 19:16.
constexpr std::uint32_t wq_mask_operand(unsigned wq) { return (1u << (wq % 16)) | (wq / 16) << 16; }

// CMDSTS: error code in bits 7:0, result (an interrupt handle) in 23:8, and
// bit 31 set while a command runs.
inline constexpr std::uint32_t kCmdStsActive = 1u << 31;
struct CommandStatus {
  bool active = false;
  std::uint8_t error = 0;  // 0: success
  std::uint16_t result = 0;
};
constexpr CommandStatus decode_cmdsts(std::uint32_t value) {
  return {(value & kCmdStsActive) != 0, static_cast<std::uint8_t>(value & 0xff),
          static_cast<std::uint16_t>((value >> 8) & 0xffff)};
}
constexpr std::string_view cmdsts_error_name(std::uint8_t error) {
  switch (error) {
    case 0x00: return "success";
    case 0x01: return "invalid command";
    case 0x02: return "invalid WQ index";
    case 0x03: return "hardware error";
    case 0x10: return "device already enabled";
    case 0x11: return "invalid configuration";
    case 0x12: return "bus master enable is 0";
    case 0x13: return "invalid PASID";
    case 0x14: return "WQ sizes exceed the total";
    case 0x15: case 0x16: case 0x17: case 0x18: return "invalid group configuration";
    case 0x20: return "device not enabled";
    case 0x21: return "WQ already enabled";
    case 0x22: return "invalid WQ size";
    case 0x23: return "invalid WQ priority";
    case 0x24: return "invalid WQ mode";
    case 0x25: return "invalid block-on-fault setting";
    case 0x26: return "invalid PASID enable";
    case 0x27: return "invalid WQ max batch size";
    case 0x28: return "invalid WQ max transfer size";
    case 0x31: return "device enabled (disable device)";
    case 0x32: return "device not enabled (WQ command)";
    case 0x41: return "invalid interrupt index";
    case 0x42: return "no interrupt handle available";
    default: return "unknown error";
  }
}

// ---------------------------------------------------------------------------
// Group and WQ configuration.

// GRPCFG entry for one group holding WQ `wq` and engine `engine`, as the six
// 64-bit words at entry offsets 0, 8, 16, 24 (WQ bitmap), 32 (engine bitmap)
// and 40 (flags). Flags: traffic class A in bits 2:0 and B in 5:3 (1 for
// both, as Linux sets on version 1 and 2 devices), read buffers allowed in
// bits 27:20.
constexpr std::array<std::uint64_t, kGrpCfgWordCount> encode_grpcfg(unsigned wq, unsigned engine,
                                                                     unsigned read_buffers_allowed) {
  std::array<std::uint64_t, kGrpCfgWordCount> words{};
  words[wq / 64 % 4] = 1ull << (wq % 64);
  words[4] = 1ull << (engine % 64);
  words[5] = 1ull << 0 | 1ull << 3 | static_cast<std::uint64_t>(read_buffers_allowed & 0xff) << 20;
  return words;
}

// The first four 32-bit words of a WQCFG entry: the size, threshold, mode
// and the limits. The rest (occupancy, state, operation bitmap) is left to
// the device's values, except the operation bitmap when the WQ has one.
inline constexpr std::size_t kWqCfgWordCount = 4;
inline constexpr std::size_t kWqCfgOpConfigOffset = 32;  // bytes into the entry, 256 bits
struct WqConfig {
  std::uint16_t size = 0;
  std::uint16_t threshold = 0;  // shared mode only
  bool dedicated = true;
  bool block_on_fault = false;
  std::uint8_t priority = 1;    // 1..15
  unsigned max_xfer_shift = 0;   // log2 of the WQ's largest transfer
  unsigned max_batch_shift = 0;  // log2 of the WQ's largest batch
};
constexpr std::array<std::uint32_t, kWqCfgWordCount> encode_wqcfg(const WqConfig& config) {
  std::array<std::uint32_t, kWqCfgWordCount> words{};
  words[0] = config.size;
  words[1] = config.threshold;
  // Word 2: mode (1 dedicated) bit 0, block on fault bit 1, priority 7:4;
  // PASID (27:8), PASID enable (28) and privileged (29) stay 0.
  words[2] = (config.dedicated ? 1u : 0u) | (config.block_on_fault ? 1u << 1 : 0u) |
             static_cast<std::uint32_t>(config.priority & 0xf) << 4;
  // Word 3: max transfer shift 4:0, max batch shift 8:5.
  words[3] = (config.max_xfer_shift & 0x1f) | (config.max_batch_shift & 0xf) << 5;
  return words;
}

// ---------------------------------------------------------------------------
// Descriptors: 64 bytes, submitted to a portal with one 64-byte store.
enum class Opcode : std::uint8_t {
  noop = 0x00,
  batch = 0x01,
  drain = 0x02,
  memmove = 0x03,
  memfill = 0x04,
  compare = 0x05,
  compare_pattern = 0x06,
  create_delta = 0x07,
  apply_delta = 0x08,
  dualcast = 0x09,
  crc_generate = 0x10,
  copy_crc = 0x11,
  cache_flush = 0x20,
};

// Descriptor flags (bits 23:0 of the second word).
inline constexpr std::uint32_t kFlagFence = 1u << 0;
inline constexpr std::uint32_t kFlagBlockOnFault = 1u << 1;
inline constexpr std::uint32_t kFlagCompletionAddrValid = 1u << 2;  // CRAV
inline constexpr std::uint32_t kFlagRequestCompletion = 1u << 3;    // RCR
inline constexpr std::uint32_t kFlagRequestInterrupt = 1u << 4;     // RCI
inline constexpr std::uint32_t kFlagCacheControl = 1u << 8;         // CC: write to cache
inline constexpr std::uint32_t kFlagDestReadback = 1u << 14;

struct HwDescriptor {
  std::uint32_t pasid_priv = 0;    // PASID 19:0, privileged 31
  std::uint32_t flags_opcode = 0;  // flags 23:0, opcode 31:24 (byte 7)
  std::uint64_t completion_addr = 0;
  std::uint64_t src = 0;  // the descriptor list for a batch
  std::uint64_t dst = 0;
  std::uint32_t xfer_size = 0;  // the descriptor count for a batch
  std::uint16_t int_handle = 0;
  std::uint16_t reserved = 0;
  std::uint8_t op_specific[24] = {};

  constexpr std::uint32_t flags() const { return flags_opcode & 0xffffff; }
  constexpr Opcode opcode() const { return static_cast<Opcode>(flags_opcode >> 24); }
};
static_assert(sizeof(HwDescriptor) == 64);
static_assert(offsetof(HwDescriptor, flags_opcode) == 4);
static_assert(offsetof(HwDescriptor, completion_addr) == 8);
static_assert(offsetof(HwDescriptor, src) == 16);
static_assert(offsetof(HwDescriptor, dst) == 24);
static_assert(offsetof(HwDescriptor, xfer_size) == 32);
static_assert(offsetof(HwDescriptor, int_handle) == 36);
static_assert(offsetof(HwDescriptor, op_specific) == 40);

constexpr std::uint32_t pack_flags_opcode(Opcode opcode, std::uint32_t flags) {
  return (flags & 0xffffff) | static_cast<std::uint32_t>(opcode) << 24;
}
// A completion record is asked for whenever an address is given.
constexpr std::uint32_t completion_flags(std::uint64_t completion_addr) {
  return completion_addr ? kFlagCompletionAddrValid | kFlagRequestCompletion : 0;
}

// One copy of `size` bytes. With `interrupt`, RCI is set: int_handle must be
// filled in by the caller.
constexpr HwDescriptor encode_memmove(std::uint64_t src, std::uint64_t dst, std::uint32_t size,
                                      std::uint64_t completion_addr, bool interrupt) {
  HwDescriptor d;
  d.flags_opcode = pack_flags_opcode(
      Opcode::memmove, completion_flags(completion_addr) | (interrupt ? kFlagRequestInterrupt : 0));
  d.completion_addr = completion_addr;
  d.src = src;
  d.dst = dst;
  d.xfer_size = size;
  return d;
}

// Does nothing but complete: with `interrupt` and an interrupt handle, an
// MSI on demand.
constexpr HwDescriptor encode_noop(std::uint64_t completion_addr, bool interrupt) {
  HwDescriptor d;
  d.flags_opcode =
      pack_flags_opcode(Opcode::noop, completion_flags(completion_addr) | (interrupt ? kFlagRequestInterrupt : 0));
  d.completion_addr = completion_addr;
  return d;
}

// `count` (2 or more) descriptors at desc_list_addr (64-byte aligned),
// processed as one submission.
constexpr HwDescriptor encode_batch(std::uint64_t desc_list_addr, std::uint32_t count,
                                    std::uint64_t completion_addr) {
  HwDescriptor d;
  d.flags_opcode = pack_flags_opcode(Opcode::batch, completion_flags(completion_addr));
  d.completion_addr = completion_addr;
  d.src = desc_list_addr;
  d.xfer_size = count;
  return d;
}

// ---------------------------------------------------------------------------
// Completion records: 32 bytes, 32-byte aligned; the device writes status
// last.
struct CompletionRecord {
  std::uint8_t status = 0;  // 0 until written; code in 6:0, bit 7 = faulting access was a write
  std::uint8_t result = 0;
  std::uint8_t fault_info = 0;
  std::uint8_t reserved = 0;
  std::uint32_t bytes_completed = 0;  // descriptors completed, for a batch
  std::uint64_t fault_addr = 0;
  std::uint32_t invalid_flags = 0;    // bits 23:0
  std::uint8_t op_specific[12] = {};
};
static_assert(sizeof(CompletionRecord) == 32);
static_assert(offsetof(CompletionRecord, result) == 1);
static_assert(offsetof(CompletionRecord, fault_info) == 2);
static_assert(offsetof(CompletionRecord, bytes_completed) == 4);
static_assert(offsetof(CompletionRecord, fault_addr) == 8);
static_assert(offsetof(CompletionRecord, invalid_flags) == 16);
inline constexpr std::size_t kCompletionAlign = 32;

namespace status {
inline constexpr std::uint8_t none = 0x00;
inline constexpr std::uint8_t success = 0x01;
inline constexpr std::uint8_t success_false_predicate = 0x02;
inline constexpr std::uint8_t page_fault_no_bof = 0x03;
inline constexpr std::uint8_t page_fault_irrecoverable = 0x04;
inline constexpr std::uint8_t batch_fail = 0x05;
inline constexpr std::uint8_t batch_page_fault = 0x06;
inline constexpr std::uint8_t bad_opcode = 0x10;
inline constexpr std::uint8_t invalid_flags = 0x11;
inline constexpr std::uint8_t nonzero_reserved = 0x12;
inline constexpr std::uint8_t xfer_size_range = 0x13;
inline constexpr std::uint8_t desc_count_range = 0x14;
inline constexpr std::uint8_t overlapping_buffers = 0x16;
inline constexpr std::uint8_t desc_list_align = 0x18;
inline constexpr std::uint8_t invalid_int_handle = 0x19;
inline constexpr std::uint8_t completion_translation = 0x1a;
inline constexpr std::uint8_t completion_align = 0x1b;
inline constexpr std::uint8_t address_align = 0x1c;
inline constexpr std::uint8_t privilege = 0x1d;
inline constexpr std::uint8_t traffic_class = 0x1e;
inline constexpr std::uint8_t readback_page_fault = 0x1f;
inline constexpr std::uint8_t hardware_error = 0x20;
inline constexpr std::uint8_t hardware_error_readback = 0x21;
inline constexpr std::uint8_t translation_failure = 0x22;
}  // namespace status

inline constexpr std::uint8_t kStatusCodeMask = 0x7f;
inline constexpr std::uint8_t kStatusFaultWrite = 0x80;

enum class Completion { pending, success, page_fault, error };
struct CompletionDecode {
  Completion kind = Completion::pending;
  std::uint8_t code = 0;
  bool fault_on_write = false;  // meaningful for page faults
};
constexpr CompletionDecode decode_completion(std::uint8_t status_byte) {
  const std::uint8_t code = status_byte & kStatusCodeMask;
  CompletionDecode d{Completion::error, code, (status_byte & kStatusFaultWrite) != 0};
  switch (code) {
    case status::none: d.kind = Completion::pending; break;
    case status::success:
    case status::success_false_predicate: d.kind = Completion::success; break;
    case status::page_fault_no_bof:
    case status::page_fault_irrecoverable:
    case status::batch_page_fault:
    case status::readback_page_fault: d.kind = Completion::page_fault; break;
    default: break;
  }
  return d;
}
constexpr std::string_view completion_status_name(std::uint8_t code) {
  switch (code & kStatusCodeMask) {
    case status::none: return "not written";
    case status::success: return "success";
    case status::success_false_predicate: return "success, false predicate";
    case status::page_fault_no_bof: return "page fault (no block on fault)";
    case status::page_fault_irrecoverable: return "irrecoverable page fault";
    case status::batch_fail: return "a descriptor in the batch failed";
    case status::batch_page_fault: return "page fault reading the descriptor list";
    case status::bad_opcode: return "unsupported opcode";
    case status::invalid_flags: return "invalid flags";
    case status::nonzero_reserved: return "nonzero reserved field";
    case status::xfer_size_range: return "transfer size out of range";
    case status::desc_count_range: return "descriptor count out of range";
    case status::overlapping_buffers: return "overlapping buffers";
    case status::desc_list_align: return "misaligned descriptor list";
    case status::invalid_int_handle: return "invalid interrupt handle";
    case status::completion_translation: return "completion record address translation failed";
    case status::completion_align: return "misaligned completion record";
    case status::address_align: return "misaligned address";
    case status::privilege: return "privilege error";
    case status::traffic_class: return "traffic class configuration error";
    case status::readback_page_fault: return "page fault on the readback address";
    case status::hardware_error: return "hardware error";
    case status::hardware_error_readback: return "hardware error on readback";
    case status::translation_failure: return "address translation failed";
    default: return "unknown status";
  }
}

// Intel DSA devices that the Linux idxd driver binds (drivers/dma/idxd/init.c,
// IDs from include/linux/pci_ids.h). IAA (0x0cfe) is idxd's other device
// type, not a DSA, and has no MEMMOVE batches.
constexpr bool dsa_matches(std::uint16_t vendor, std::uint16_t device) {
  constexpr std::uint16_t kVendorIntel = 0x8086;
  return vendor == kVendorIntel && (device == 0x0b25     // DSA_SPR0: Sapphire Rapids (DSA 1.0)
                                    || device == 0x11fb  // DSA_GNRD: Granite Rapids-D
                                    || device == 0x1212  // DSA_DMR: Diamond Rapids
                                   );
}

}  // namespace vfiolab::dsa
