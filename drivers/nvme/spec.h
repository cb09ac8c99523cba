// NVMe facts the driver uses, from the NVM Express Base Specification 2.0
// (controller registers, section 3.1; queue entries, section 4; admin
// commands, section 5) and the NVM Command Set Specification (Read, Write,
// Identify Namespace).
#pragma once

#include <cstddef>
#include <cstdint>

namespace vfiolab::nvme {

// Controller registers in BAR0.
inline constexpr std::size_t kRegCap = 0x00;   // 64-bit capabilities
inline constexpr std::size_t kRegCc = 0x14;    // controller configuration
inline constexpr std::size_t kRegCsts = 0x1c;  // controller status
inline constexpr std::size_t kRegAqa = 0x24;   // admin queue sizes (zero-based)
inline constexpr std::size_t kRegAsq = 0x28;   // admin SQ base, 64-bit
inline constexpr std::size_t kRegAcq = 0x30;   // admin CQ base, 64-bit
inline constexpr std::size_t kDoorbells = 0x1000;

struct Capabilities {
  std::uint64_t raw;
  std::uint32_t max_queue_entries() const { return (raw & 0xffff) + 1; }  // MQES is zero-based
  std::uint32_t timeout_ms() const { return ((raw >> 24) & 0xff) * 500; }  // TO, in 500 ms units
  std::uint32_t doorbell_stride() const { return 4u << ((raw >> 32) & 0xf); }  // DSTRD
  bool nvm_command_set() const { return (raw >> 37) & 1; }  // CSS bit 0
  std::uint32_t min_page_size() const { return 1u << (12 + ((raw >> 48) & 0xf)); }  // MPSMIN
};

// CC: EN bit 0, CSS 6:4 (0 = NVM), MPS 10:7 (4 KiB << n), AMS 13:11,
// SHN 15:14, IOSQES 19:16 and IOCQES 23:20 (log2 of entry sizes).
inline constexpr std::uint32_t kCcEnable = 1u << 0;
inline constexpr std::uint32_t kCcIoQueueEntrySizes = (6u << 16) | (4u << 20);  // 64-byte SQE, 16-byte CQE
// CSTS: RDY bit 0, CFS (fatal status) bit 1.
inline constexpr std::uint32_t kCstsReady = 1u << 0;
inline constexpr std::uint32_t kCstsFatal = 1u << 1;

// A submission queue entry.
struct Command {
  std::uint8_t opcode;
  std::uint8_t flags;  // FUSE 1:0, PSDT 7:6 (0 = PRPs)
  std::uint16_t command_id;
  std::uint32_t nsid;
  std::uint32_t cdw2;
  std::uint32_t cdw3;
  std::uint64_t metadata;
  std::uint64_t prp1;
  std::uint64_t prp2;
  std::uint32_t cdw10;
  std::uint32_t cdw11;
  std::uint32_t cdw12;
  std::uint32_t cdw13;
  std::uint32_t cdw14;
  std::uint32_t cdw15;
};
static_assert(sizeof(Command) == 64);
static_assert(offsetof(Command, prp1) == 24 && offsetof(Command, cdw10) == 40);

// A completion queue entry.
struct Completion {
  std::uint32_t result;  // DW0, command specific
  std::uint32_t dw1;
  std::uint16_t sq_head;
  std::uint16_t sq_id;
  std::uint16_t command_id;
  std::uint16_t status;  // bit 0: phase tag; 15:1: status field
  bool phase() const { return status & 1; }
  std::uint16_t status_field() const { return status >> 1; }  // 0 = success
  std::uint8_t status_code() const { return status_field() & 0xff; }
  std::uint8_t status_code_type() const { return (status_field() >> 8) & 0x7; }
};
static_assert(sizeof(Completion) == 16);

// Opcodes.
inline constexpr std::uint8_t kAdminDeleteSq = 0x00;
inline constexpr std::uint8_t kAdminCreateSq = 0x01;
inline constexpr std::uint8_t kAdminDeleteCq = 0x04;
inline constexpr std::uint8_t kAdminCreateCq = 0x05;
inline constexpr std::uint8_t kAdminIdentify = 0x06;
inline constexpr std::uint8_t kAdminSetFeatures = 0x09;
inline constexpr std::uint8_t kAdminGetFeatures = 0x0a;
inline constexpr std::uint8_t kIoWrite = 0x01;
inline constexpr std::uint8_t kIoRead = 0x02;

inline constexpr std::uint32_t kIdentifyNamespace = 0x00;   // CNS
inline constexpr std::uint32_t kIdentifyController = 0x01;  // CNS
inline constexpr std::uint32_t kFeatureNumberOfQueues = 0x07;

// Identify Controller: MDTS (byte 77, log2 of the largest transfer in units
// of the minimum page size; 0 = no limit), model number (bytes 24..63).
inline constexpr std::size_t kIdCtrlModel = 24;
inline constexpr std::size_t kIdCtrlModelLength = 40;
inline constexpr std::size_t kIdCtrlMdts = 77;
// Identify Namespace: NSZE (bytes 0..7, in blocks), FLBAS (byte 26, bits
// 3:0 pick the LBA format), LBA formats at 128 + 4n with LBADS (log2 of the
// block size) in bits 23:16.
inline constexpr std::size_t kIdNsSize = 0;
inline constexpr std::size_t kIdNsFlbas = 26;
inline constexpr std::size_t kIdNsLbaFormats = 128;

// Create I/O Completion Queue: CDW10 QSIZE (zero-based) 31:16 | QID 15:0;
// CDW11 IV 31:16 | IEN bit 1 | PC bit 0.
constexpr Command create_io_cq(std::uint16_t qid, std::uint32_t entries, std::uint64_t base, bool interrupts,
                               std::uint16_t vector) {
  Command c{};
  c.opcode = kAdminCreateCq;
  c.prp1 = base;
  c.cdw10 = ((entries - 1) << 16) | qid;
  c.cdw11 = (std::uint32_t{vector} << 16) | (interrupts ? 2u : 0u) | 1u;
  return c;
}
// Create I/O Submission Queue: CDW10 as above; CDW11 CQID 31:16 | PC bit 0.
constexpr Command create_io_sq(std::uint16_t qid, std::uint32_t entries, std::uint64_t base, std::uint16_t cqid) {
  Command c{};
  c.opcode = kAdminCreateSq;
  c.prp1 = base;
  c.cdw10 = ((entries - 1) << 16) | qid;
  c.cdw11 = (std::uint32_t{cqid} << 16) | 1u;
  return c;
}
// Read or Write: SLBA in CDW10-11, NLB (zero-based) in CDW12 15:0.
constexpr Command read_write(std::uint8_t opcode, std::uint32_t nsid, std::uint64_t slba, std::uint32_t blocks,
                             std::uint64_t prp1, std::uint64_t prp2) {
  Command c{};
  c.opcode = opcode;
  c.nsid = nsid;
  c.prp1 = prp1;
  c.prp2 = prp2;
  c.cdw10 = static_cast<std::uint32_t>(slba);
  c.cdw11 = static_cast<std::uint32_t>(slba >> 32);
  c.cdw12 = (blocks - 1) & 0xffff;
  return c;
}

}  // namespace vfiolab::nvme
