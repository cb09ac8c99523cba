// The 82576 register map and descriptor encoders of drivers/igb against the
// addresses and fields of Linux's igb and igbvf drivers (e1000_regs.h of
// each, e1000_82575.h) and QEMU's model (hw/net/igb_regs.h, igbvf.c).
// Pure functions only: no device.
#include "igb/registers.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace vfiolab::igb {
namespace {

// PF queue n: the receive block at 0xC000 + 0x40 n, the transmit block at
// 0xE000 + 0x40 n (E1000_RDBAL(n) and friends for n >= 4, the layout the
// driver uses for every queue).
TEST(IgbRegisters, PfQueueBlocks) {
  constexpr QueueRegisters q0 = pf_queue(0);
  EXPECT_EQ(q0.rdbal(), 0x0c000u);
  EXPECT_EQ(q0.rdbah(), 0x0c004u);
  EXPECT_EQ(q0.rdlen(), 0x0c008u);
  EXPECT_EQ(q0.srrctl(), 0x0c00cu);
  EXPECT_EQ(q0.rdh(), 0x0c010u);
  EXPECT_EQ(q0.rdt(), 0x0c018u);
  EXPECT_EQ(q0.rxdctl(), 0x0c028u);
  EXPECT_EQ(q0.tdbal(), 0x0e000u);
  EXPECT_EQ(q0.tdt(), 0x0e018u);
  EXPECT_EQ(q0.txdctl(), 0x0e028u);
  constexpr QueueRegisters q9 = pf_queue(9);
  EXPECT_EQ(q9.rdbal(), 0x0c240u);
  EXPECT_EQ(q9.txdctl(), 0x0e268u);
}

// A VF's queue 0 in its own BAR0: the 82575-compatible addresses the igbvf
// driver uses (E1000_RDBAL(0) 0x2800 ... E1000_TXDCTL(0) 0x3828), which QEMU
// maps to the PF's queue of that VF.
TEST(IgbRegisters, VfQueueZero) {
  EXPECT_EQ(kVfQueue0.rdbal(), 0x02800u);
  EXPECT_EQ(kVfQueue0.rdbah(), 0x02804u);
  EXPECT_EQ(kVfQueue0.rdlen(), 0x02808u);
  EXPECT_EQ(kVfQueue0.srrctl(), 0x0280cu);
  EXPECT_EQ(kVfQueue0.rdh(), 0x02810u);
  EXPECT_EQ(kVfQueue0.rdt(), 0x02818u);
  EXPECT_EQ(kVfQueue0.rxdctl(), 0x02828u);
  EXPECT_EQ(kVfQueue0.tdbal(), 0x03800u);
  EXPECT_EQ(kVfQueue0.tdbah(), 0x03804u);
  EXPECT_EQ(kVfQueue0.tdlen(), 0x03808u);
  EXPECT_EQ(kVfQueue0.tdh(), 0x03810u);
  EXPECT_EQ(kVfQueue0.tdt(), 0x03818u);
  EXPECT_EQ(kVfQueue0.txdctl(), 0x03828u);
}

// What the PF controls per pool: VMOLR(n) at 0x5AD0 + 4 n, and RAH's pool
// select bits from bit 18 (E1000_RAH_POOL_1 0x00040000).
TEST(IgbRegisters, PoolControls) {
  EXPECT_EQ(vmolr(0), 0x05ad0u);
  EXPECT_EQ(vmolr(7), 0x05aecu);
  EXPECT_EQ(rah_pool(0), 0x00040000u);
  EXPECT_EQ(rah_pool(7), 0x02000000u);
  EXPECT_EQ(ral(1), 0x05408u);
  EXPECT_EQ(rah(1), 0x0540cu);
}

// SRRCTL: BSIZEPACKET in 1 KiB units (bits 6:0), BSIZEHEADER in 64-byte
// units (bits 11:8), DESCTYPE 101b (header split, always) and DROP_EN.
TEST(IgbEncoding, SrrctlHeaderSplit) {
  EXPECT_EQ(srrctl_value(9 * 1024, 64), 9u | (1u << 8) | (5u << 25) | (1u << 31));
  EXPECT_EQ(srrctl_value(2048, 256), 2u | (4u << 8) | (5u << 25) | (1u << 31));
}

// An advanced data descriptor: the buffer's length in bits 15:0, DTYP 0011b,
// DEXT and IFCS always, EOP and RS when asked, PAYLEN from bit 14.
TEST(IgbEncoding, TxDataDescriptor) {
  const TxDescriptor first = tx_data(0x1234000, 64, 4160, false, false);
  EXPECT_EQ(first.address, 0x1234000u);
  EXPECT_EQ(first.cmd_type_len, 64u | (3u << 20) | (1u << 29) | (1u << 25));
  EXPECT_EQ(first.olinfo_status, 4160u << 14);
  const TxDescriptor last = tx_data(0x5000, 4096, 0, true, true);
  EXPECT_EQ(last.cmd_type_len, 4096u | (3u << 20) | (1u << 29) | (1u << 25) | (1u << 24) | (1u << 27));
  EXPECT_EQ(last.olinfo_status, 0u);
}

}  // namespace
}  // namespace vfiolab::igb
