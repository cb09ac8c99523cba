// The DSA encoders against the layouts of the Linux kernel's
// include/uapi/linux/idxd.h (struct dsa_hw_desc, struct
// dsa_completion_record, IDXD_OP_FLAG_*, enum dsa_opcode, enum
// dsa_completion_status) and drivers/dma/idxd/registers.h (union
// idxd_command_reg, union cmdsts_reg, union wqcfg, struct grpcfg). The
// expected values are written out by hand from those definitions.
#include "dsa/registers.h"

#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cstdint>

namespace vfiolab::dsa {
namespace {

using Bytes64 = std::array<std::uint8_t, 64>;

std::uint64_t le64(const Bytes64& b, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= std::uint64_t{b[at + i]} << (8 * i);
  return v;
}

TEST(DsaEncoding, DescriptorLayoutMatchesDsaHwDesc) {
  // pasid:20 rsvd:11 priv:1 | flags:24 opcode:8 | completion_addr | src | dst |
  // xfer_size(32) int_handle(16) rsvd(16) | 24 bytes operation-specific.
  EXPECT_EQ(sizeof(HwDescriptor), 64u);
  EXPECT_EQ(offsetof(HwDescriptor, completion_addr), 8u);
  EXPECT_EQ(offsetof(HwDescriptor, src), 16u);
  EXPECT_EQ(offsetof(HwDescriptor, dst), 24u);
  EXPECT_EQ(offsetof(HwDescriptor, xfer_size), 32u);
  EXPECT_EQ(offsetof(HwDescriptor, int_handle), 36u);
  EXPECT_EQ(offsetof(HwDescriptor, op_specific), 40u);
}

TEST(DsaEncoding, CompletionRecordLayoutMatchesDsaCompletionRecord) {
  // status, result, fault_info, rsvd | bytes_completed | fault_addr | 16 bytes.
  EXPECT_EQ(sizeof(CompletionRecord), 32u);
  EXPECT_EQ(offsetof(CompletionRecord, status), 0u);
  EXPECT_EQ(offsetof(CompletionRecord, result), 1u);
  EXPECT_EQ(offsetof(CompletionRecord, fault_info), 2u);
  EXPECT_EQ(offsetof(CompletionRecord, bytes_completed), 4u);
  EXPECT_EQ(offsetof(CompletionRecord, fault_addr), 8u);
  EXPECT_EQ(offsetof(CompletionRecord, invalid_flags), 16u);
}

TEST(DsaEncoding, FlagBitsMatchIdxdOpFlags) {
  EXPECT_EQ(kFlagFence, 0x0001u);                 // IDXD_OP_FLAG_FENCE
  EXPECT_EQ(kFlagBlockOnFault, 0x0002u);          // IDXD_OP_FLAG_BOF
  EXPECT_EQ(kFlagCompletionAddrValid, 0x0004u);   // IDXD_OP_FLAG_CRAV
  EXPECT_EQ(kFlagRequestCompletion, 0x0008u);     // IDXD_OP_FLAG_RCR
  EXPECT_EQ(kFlagRequestInterrupt, 0x0010u);      // IDXD_OP_FLAG_RCI
  EXPECT_EQ(kFlagCacheControl, 0x0100u);          // IDXD_OP_FLAG_CC
  EXPECT_EQ(kFlagDestReadback, 0x4000u);          // IDXD_OP_FLAG_DRDBK
}

TEST(DsaEncoding, OpcodesMatchDsaOpcode) {
  EXPECT_EQ(static_cast<int>(Opcode::noop), 0);      // DSA_OPCODE_NOOP
  EXPECT_EQ(static_cast<int>(Opcode::batch), 1);     // DSA_OPCODE_BATCH
  EXPECT_EQ(static_cast<int>(Opcode::drain), 2);     // DSA_OPCODE_DRAIN
  EXPECT_EQ(static_cast<int>(Opcode::memmove), 3);   // DSA_OPCODE_MEMMOVE
  EXPECT_EQ(static_cast<int>(Opcode::dualcast), 9);  // DSA_OPCODE_DUALCAST
  EXPECT_EQ(static_cast<int>(Opcode::crc_generate), 0x10);  // DSA_OPCODE_CRCGEN
  EXPECT_EQ(static_cast<int>(Opcode::cache_flush), 0x20);   // DSA_OPCODE_CFLUSH
}

TEST(DsaEncoding, MemmoveBytes) {
  constexpr HwDescriptor d = encode_memmove(0x1000, 0x2000, 0x40, 0x3000, false);
  static_assert(d.opcode() == Opcode::memmove);
  const auto b = std::bit_cast<Bytes64>(d);
  EXPECT_EQ(b[7], 0x03);                 // opcode in the top byte of the second dword
  EXPECT_EQ(b[4], 0x04 | 0x08);          // CRAV | RCR, no RCI
  EXPECT_EQ(b[5], 0);
  EXPECT_EQ(b[6], 0);
  EXPECT_EQ(le64(b, 0) & 0xffffffff, 0u);  // no PASID, not privileged
  EXPECT_EQ(le64(b, 8), 0x3000u);
  EXPECT_EQ(le64(b, 16), 0x1000u);
  EXPECT_EQ(le64(b, 24), 0x2000u);
  EXPECT_EQ(le64(b, 32), 0x40u);           // xfer_size, int_handle 0
  for (std::size_t i = 40; i < 64; ++i) EXPECT_EQ(b[i], 0) << "byte " << i;

  const HwDescriptor irq = encode_memmove(1, 2, 3, 0x40, true);
  EXPECT_EQ(irq.flags(), kFlagCompletionAddrValid | kFlagRequestCompletion | kFlagRequestInterrupt);
  // No completion address: no CRAV/RCR.
  EXPECT_EQ(encode_memmove(1, 2, 3, 0, false).flags(), 0u);
}

TEST(DsaEncoding, NoopWithInterrupt) {
  HwDescriptor d = encode_noop(0x40, true);
  d.int_handle = 0x1234;
  const auto b = std::bit_cast<Bytes64>(d);
  EXPECT_EQ(b[7], 0x00);
  EXPECT_EQ(b[4], 0x04 | 0x08 | 0x10);  // CRAV | RCR | RCI
  EXPECT_EQ(le64(b, 8), 0x40u);
  EXPECT_EQ(le64(b, 16), 0u);
  EXPECT_EQ(le64(b, 24), 0u);
  EXPECT_EQ(le64(b, 32), 0x1234ull << 32);  // int_handle at byte 36
}

TEST(DsaEncoding, BatchCarriesListAndCount) {
  const auto b = std::bit_cast<Bytes64>(encode_batch(0x10000, 32, 0x80));
  EXPECT_EQ(b[7], 0x01);
  EXPECT_EQ(b[4], 0x04 | 0x08);
  EXPECT_EQ(le64(b, 8), 0x80u);
  EXPECT_EQ(le64(b, 16), 0x10000u);  // desc_list_addr shares src_addr's place
  EXPECT_EQ(le64(b, 32), 32u);       // desc_count shares xfer_size's place
}

TEST(DsaEncoding, CommandRegister) {
  // union idxd_command_reg: operand:20 cmd:5 rsvd:6 int_req:1.
  EXPECT_EQ(encode_cmd(Command::enable_device, 0), 1u << 20);
  EXPECT_EQ(encode_cmd(Command::reset_device, 0, true), 5u << 20 | 1u << 31);
  EXPECT_EQ(encode_cmd(Command::enable_wq, 3), 6u << 20 | 3u);
  EXPECT_EQ(encode_cmd(Command::request_int_handle, 0xfffff), 13u << 20 | 0xfffffu);
  EXPECT_EQ(encode_cmd(Command::enable_wq, 0x100000), 6u << 20);  // operand masked to 20 bits
  // enum idxd_cmd numbering.
  EXPECT_EQ(static_cast<int>(Command::disable_device), 2);
  EXPECT_EQ(static_cast<int>(Command::disable_wq), 7);
  EXPECT_EQ(static_cast<int>(Command::release_int_handle), 14);
  // Disable WQ operand: BIT(id % 16) | (id / 16) << 16, as idxd_wq_disable().
  EXPECT_EQ(wq_mask_operand(0), 0x1u);
  EXPECT_EQ(wq_mask_operand(17), 0x2u | 1u << 16);
}

TEST(DsaEncoding, CommandStatus) {
  // union cmdsts_reg: err:8 result:16 rsvd:7 active:1.
  const CommandStatus busy = decode_cmdsts(0x80000000);
  EXPECT_TRUE(busy.active);
  EXPECT_EQ(busy.error, 0);
  const CommandStatus handle = decode_cmdsts(0x00abcd00);
  EXPECT_FALSE(handle.active);
  EXPECT_EQ(handle.error, 0);
  EXPECT_EQ(handle.result, 0xabcd);
  const CommandStatus err = decode_cmdsts(0x12);
  EXPECT_EQ(err.error, 0x12);  // IDXD_CMDSTS_ERR_BUSMASTER_EN
  EXPECT_EQ(cmdsts_error_name(0x12), "bus master enable is 0");
}

TEST(DsaEncoding, GroupConfig) {
  // struct grpcfg: wqs[4], engines, flags; union group_flags: tc_a:3 tc_b:3
  // rsvd:1 use_rdbuf_limit:1 rdbufs_reserved:8 rsvd:4 rdbufs_allowed:8.
  const auto w = encode_grpcfg(0, 0, 0x60);
  EXPECT_EQ(w[0], 1u);
  EXPECT_EQ(w[1], 0u);
  EXPECT_EQ(w[2], 0u);
  EXPECT_EQ(w[3], 0u);
  EXPECT_EQ(w[4], 1u);
  EXPECT_EQ(w[5], 0x1ull | 0x1ull << 3 | 0x60ull << 20);
  const auto w2 = encode_grpcfg(65, 3, 0);
  EXPECT_EQ(w2[0], 0u);
  EXPECT_EQ(w2[1], 0x2u);
  EXPECT_EQ(w2[4], 0x8u);
}

TEST(DsaEncoding, WqConfig) {
  // union wqcfg: wq_size:16 | wq_thresh:16 | mode:1 bof:1 ats_dis:1 prs_dis:1
  // priority:4 pasid:20 pasid_en:1 priv:1 | max_xfer_shift:5 max_batch_shift:4.
  const auto w = encode_wqcfg({.size = 16, .threshold = 0, .dedicated = true, .block_on_fault = false,
                               .priority = 10, .max_xfer_shift = 31, .max_batch_shift = 10});
  EXPECT_EQ(w[0], 16u);
  EXPECT_EQ(w[1], 0u);
  EXPECT_EQ(w[2], 0x1u | 10u << 4);
  EXPECT_EQ(w[3], 31u | 10u << 5);
  const auto shared = encode_wqcfg({.size = 8, .threshold = 4, .dedicated = false, .block_on_fault = true,
                                    .priority = 15, .max_xfer_shift = 21, .max_batch_shift = 0});
  EXPECT_EQ(shared[1], 4u);
  EXPECT_EQ(shared[2], 0x2u | 0xf0u);
  EXPECT_EQ(shared[3], 21u);
}

TEST(DsaEncoding, CapabilityFields) {
  // union gen_cap_reg: max_xfer_shift at bits 20:16, max_batch_shift at 24:21.
  const std::uint64_t gencap = 31ull << 16 | 10ull << 21 | 1ull << 31;
  EXPECT_EQ(gencap_max_xfer_shift(gencap), 31u);
  EXPECT_EQ(gencap_max_batch_shift(gencap), 10u);
  // union wq_cap_reg: wqcfg entry is 1 << (field + 5) bytes (IDXD_WQCFG_MIN 5).
  const std::uint64_t wqcap = 128 | 8ull << 16 | 1ull << 24 | kWqCapDedicatedMode;
  EXPECT_EQ(wqcap_total_size(wqcap), 128u);
  EXPECT_EQ(wqcap_num_wqs(wqcap), 8u);
  EXPECT_EQ(wqcap_wqcfg_bytes(wqcap), 64u);
  // union offsets_reg in units of IDXD_TABLE_MULT (0x100).
  const std::uint64_t offsets = 0x4 | 0x5ull << 16 | 0x30ull << 32;
  EXPECT_EQ(offsets_grpcfg(offsets), 0x400u);
  EXPECT_EQ(offsets_wqcfg(offsets), 0x500u);
  EXPECT_EQ(offsets_msix_perm(offsets), 0x3000u);
  EXPECT_EQ(genstats_state(0x3), DeviceState::halted);
  EXPECT_EQ(genstats_state(0x4 | 0x1), DeviceState::enabled);  // reset type bits ignored
}

TEST(DsaEncoding, CompletionStatus) {
  EXPECT_EQ(decode_completion(0x00).kind, Completion::pending);   // DSA_COMP_NONE
  EXPECT_EQ(decode_completion(0x01).kind, Completion::success);   // DSA_COMP_SUCCESS
  const auto fault = decode_completion(0x80 | 0x03);               // DSA_COMP_PAGE_FAULT_NOBOF, write
  EXPECT_EQ(fault.kind, Completion::page_fault);
  EXPECT_EQ(fault.code, 0x03);
  EXPECT_TRUE(fault.fault_on_write);
  EXPECT_EQ(decode_completion(0x04).kind, Completion::page_fault);  // DSA_COMP_PAGE_FAULT_IR
  EXPECT_FALSE(decode_completion(0x04).fault_on_write);
  EXPECT_EQ(decode_completion(0x05).kind, Completion::error);       // DSA_COMP_BATCH_FAIL
  EXPECT_EQ(decode_completion(0x13).kind, Completion::error);       // DSA_COMP_XFER_ERANGE
  EXPECT_EQ(status::invalid_int_handle, 0x19);                      // DSA_COMP_INT_HANDLE_INVAL
  EXPECT_EQ(status::translation_failure, 0x22);                     // DSA_COMP_TRANSLATION_FAIL
  EXPECT_EQ(completion_status_name(0x83), "page fault (no block on fault)");
}

TEST(DsaEncoding, MatchesKernelDeviceIds) {
  EXPECT_TRUE(dsa_matches(0x8086, 0x0b25));   // DSA_SPR0
  EXPECT_TRUE(dsa_matches(0x8086, 0x11fb));   // DSA_GNRD
  EXPECT_TRUE(dsa_matches(0x8086, 0x1212));   // DSA_DMR
  EXPECT_FALSE(dsa_matches(0x8086, 0x0cfe));  // IAX_SPR0: the analytics accelerator
  EXPECT_FALSE(dsa_matches(0x1234, 0x0b25));
}

}  // namespace
}  // namespace vfiolab::dsa
