// The nvme driver's command encodings and PRP plans, checked against the
// NVM Express Base Specification 2.0 layouts.
#include "nvme/prp.h"
#include "nvme/spec.h"

#include <gtest/gtest.h>

#include <cstring>

namespace vfiolab::nvme {
namespace {

TEST(NvmeCommands, CreateIoCompletionQueue) {
  const Command c = create_io_cq(1, 64, 0x3000, false, 0);
  EXPECT_EQ(c.opcode, 0x05);
  EXPECT_EQ(c.prp1, 0x3000u);
  EXPECT_EQ(c.cdw10, (63u << 16) | 1u);  // QSIZE zero-based, QID
  EXPECT_EQ(c.cdw11, 1u);                // physically contiguous, interrupts off
  const Command with_irq = create_io_cq(2, 16, 0x8000, true, 5);
  EXPECT_EQ(with_irq.cdw10, (15u << 16) | 2u);
  EXPECT_EQ(with_irq.cdw11, (5u << 16) | 0x2u | 0x1u);  // IV 5, IEN, PC
}

TEST(NvmeCommands, CreateIoSubmissionQueue) {
  const Command c = create_io_sq(1, 64, 0x2000, 1);
  EXPECT_EQ(c.opcode, 0x01);
  EXPECT_EQ(c.prp1, 0x2000u);
  EXPECT_EQ(c.cdw10, (63u << 16) | 1u);
  EXPECT_EQ(c.cdw11, (1u << 16) | 1u);  // CQID 1, PC
}

TEST(NvmeCommands, ReadWriteFields) {
  const Command w = read_write(kIoWrite, 1, 0x123456789a, 8, 0x10000, 0x11000);
  EXPECT_EQ(w.opcode, 0x01);
  EXPECT_EQ(w.nsid, 1u);
  EXPECT_EQ(w.cdw10, 0x3456789au);  // SLBA low
  EXPECT_EQ(w.cdw11, 0x12u);        // SLBA high
  EXPECT_EQ(w.cdw12, 7u);           // NLB zero-based
  EXPECT_EQ(read_write(kIoRead, 1, 0, 65536, 0, 0).cdw12, 0xffffu);
  EXPECT_EQ(read_write(kIoRead, 1, 0, 1, 0, 0).opcode, 0x02);
}

TEST(NvmeCommands, EntryLayout) {
  Command c{};
  c.opcode = 0x06;
  c.command_id = 0xbeef;
  c.prp1 = 0x1122334455667788;
  c.cdw10 = 0x01;
  unsigned char raw[64];
  std::memcpy(raw, &c, sizeof raw);
  EXPECT_EQ(raw[0], 0x06);
  EXPECT_EQ(raw[2] | raw[3] << 8, 0xbeef);  // CID in CDW0 31:16
  EXPECT_EQ(raw[24], 0x88);                 // PRP1 at byte 24, little endian
  EXPECT_EQ(raw[40], 0x01);                 // CDW10 at byte 40
}

TEST(NvmeCommands, CompletionStatusAndPhase) {
  Completion c{};
  c.status = 0x0001;  // phase 1, success
  EXPECT_TRUE(c.phase());
  EXPECT_EQ(c.status_field(), 0);
  c.status = static_cast<std::uint16_t>((0x04 << 1) | 1);  // generic, Data Transfer Error
  EXPECT_EQ(c.status_code(), 0x04);
  EXPECT_EQ(c.status_code_type(), 0);
  c.status = static_cast<std::uint16_t>(((0x2 << 8 | 0x81) << 1));  // media error, unrecovered read
  EXPECT_FALSE(c.phase());
  EXPECT_EQ(c.status_code_type(), 2);
  EXPECT_EQ(c.status_code(), 0x81);
}

TEST(NvmeCommands, CapabilityFields) {
  // MQES 2047, CQR, TO 15 (7.5 s), DSTRD 0, CSS NVM, MPSMIN 0, MPSMAX 4.
  const Capabilities cap{0x00400020'0f0107ffull};
  EXPECT_EQ(cap.max_queue_entries(), 2048u);
  EXPECT_EQ(cap.timeout_ms(), 7500u);
  EXPECT_EQ(cap.doorbell_stride(), 4u);
  EXPECT_TRUE(cap.nvm_command_set());
  EXPECT_EQ(cap.min_page_size(), 4096u);
  EXPECT_EQ((Capabilities{0x1ull << 32}.doorbell_stride()), 8u);
  EXPECT_EQ((Capabilities{0x2ull << 48}.min_page_size()), 16384u);
}

TEST(NvmePrp, WithinTheFirstPage) {
  EXPECT_EQ(plan_prps(0x10000, 4096, 4096), (PrpPlan{0x10000, {}}));
  EXPECT_EQ(plan_prps(0x10800, 2048, 4096), (PrpPlan{0x10800, {}}));
}

TEST(NvmePrp, TwoPagesUsePrp2Directly) {
  EXPECT_EQ(plan_prps(0x10000, 8192, 4096), (PrpPlan{0x10000, {0x11000}}));
  EXPECT_EQ(plan_prps(0x10800, 4096, 4096), (PrpPlan{0x10800, {0x11000}}));
}

TEST(NvmePrp, LongTransferListsEveryFollowingPage) {
  const PrpPlan plan = plan_prps(0x200200, 64 * 1024, 4096);
  EXPECT_EQ(plan.prp1, 0x200200u);
  ASSERT_EQ(plan.pages.size(), 16u);  // 3.5 KiB in the first page, then 15 full pages and a part
  for (std::size_t i = 0; i < plan.pages.size(); ++i) EXPECT_EQ(plan.pages[i], 0x201000u + 0x1000 * i);
}

TEST(NvmePrp, AlignedTwoMegabytesFillOneListPage) {
  const PrpPlan plan = plan_prps(0x400000, 2 << 20, 4096);
  EXPECT_EQ(plan.pages.size(), 511u);
}

}  // namespace
}  // namespace vfiolab::nvme
