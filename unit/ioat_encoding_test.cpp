// The CBDMA encoders against the kernel's tables: Linux 6.12
// drivers/dma/ioat/registers.h and hw.h (and SPDK's ioat_spec.h for ARMED).
// Pure functions only: no device.
#include "ioat/registers.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstddef>
#include <cstdint>

namespace vfiolab::ioat {
namespace {

// The ctl_f bitfield of hw.h's struct ioat_dma_descriptor, field for field
// in the kernel's order. GCC on x86 fills bitfields from bit 0 up, so
// setting one field and reading the word back shows the bit the hardware sees.
struct KernelCtlBitfield {
  unsigned int int_en : 1;
  unsigned int src_snoop_dis : 1;
  unsigned int dest_snoop_dis : 1;
  unsigned int compl_write : 1;
  unsigned int fence : 1;
  unsigned int null : 1;
  unsigned int src_brk : 1;
  unsigned int dest_brk : 1;
  unsigned int bundle : 1;
  unsigned int dest_dca : 1;
  unsigned int hint : 1;
  unsigned int rsvd2 : 13;
  unsigned int op : 8;
};
static_assert(sizeof(KernelCtlBitfield) == sizeof(std::uint32_t));

template <typename Set>
std::uint32_t kernel_ctl(Set set) {
  KernelCtlBitfield bits{};
  set(bits);
  return std::bit_cast<std::uint32_t>(bits);
}

TEST(IoatEncoding, DescriptorIs64BytesWithTheKernelLayout) {
  EXPECT_EQ(sizeof(DmaDescriptor), 64u);  // IOAT_DESC_SZ
  EXPECT_EQ(offsetof(DmaDescriptor, size), 0u);
  EXPECT_EQ(offsetof(DmaDescriptor, ctl), 4u);
  EXPECT_EQ(offsetof(DmaDescriptor, src_addr), 8u);
  EXPECT_EQ(offsetof(DmaDescriptor, dst_addr), 16u);
  EXPECT_EQ(offsetof(DmaDescriptor, next), 24u);
  EXPECT_EQ(offsetof(DmaDescriptor, reserved1), 32u);
  EXPECT_EQ(offsetof(DmaDescriptor, reserved2), 40u);
  EXPECT_EQ(offsetof(DmaDescriptor, user1), 48u);
  EXPECT_EQ(offsetof(DmaDescriptor, user2), 56u);
}

TEST(IoatEncoding, ControlBitsFollowTheKernelBitfieldOrder) {
  EXPECT_EQ(kCtlIntEn, kernel_ctl([](auto& b) { b.int_en = 1; }));
  EXPECT_EQ(kCtlSrcSnoopDisable, kernel_ctl([](auto& b) { b.src_snoop_dis = 1; }));
  EXPECT_EQ(kCtlDestSnoopDisable, kernel_ctl([](auto& b) { b.dest_snoop_dis = 1; }));
  EXPECT_EQ(kCtlComplWrite, kernel_ctl([](auto& b) { b.compl_write = 1; }));
  EXPECT_EQ(kCtlFence, kernel_ctl([](auto& b) { b.fence = 1; }));
  EXPECT_EQ(kCtlNull, kernel_ctl([](auto& b) { b.null = 1; }));
  EXPECT_EQ(kCtlSrcPageBreak, kernel_ctl([](auto& b) { b.src_brk = 1; }));
  EXPECT_EQ(kCtlDestPageBreak, kernel_ctl([](auto& b) { b.dest_brk = 1; }));
  EXPECT_EQ(kCtlBundle, kernel_ctl([](auto& b) { b.bundle = 1; }));
  EXPECT_EQ(kCtlDestDca, kernel_ctl([](auto& b) { b.dest_dca = 1; }));
  EXPECT_EQ(kCtlHint, kernel_ctl([](auto& b) { b.hint = 1; }));
  EXPECT_EQ(kCtlOpMask, kernel_ctl([](auto& b) { b.op = 0xff; }));
  // Plain numbers too: int_en bit 0, compl_write bit 3, fence bit 4, null bit 5, op bits 31:24.
  EXPECT_EQ(kCtlIntEn, 0x1u);
  EXPECT_EQ(kCtlComplWrite, 0x8u);
  EXPECT_EQ(kCtlFence, 0x10u);
  EXPECT_EQ(kCtlNull, 0x20u);
  EXPECT_EQ(kCtlOpMask, 0xff000000u);
  EXPECT_EQ(kOpCopy, 0x00);  // IOAT_OP_COPY
}

TEST(IoatEncoding, MemcpyDescriptor) {
  constexpr DmaDescriptor d = encode_memcpy(0x1000, 0x2000, 0x300, 0x40040, false, true);
  static_assert(d.size == 0x300);  // usable at compile time
  EXPECT_EQ(d.size, 0x300u);
  EXPECT_EQ(d.src_addr, 0x1000u);
  EXPECT_EQ(d.dst_addr, 0x2000u);
  EXPECT_EQ(d.next, 0x40040u);
  // As prep.c leaves the last descriptor of a copy: op copy, compl_write only.
  EXPECT_EQ(d.ctl, kernel_ctl([](auto& b) { b.compl_write = 1; }));
  EXPECT_EQ(d.ctl & kCtlOpMask, 0u);
  EXPECT_EQ(d.reserved1 | d.reserved2 | d.user1 | d.user2, 0u);

  EXPECT_EQ(encode_memcpy(1, 2, 3, 4, false, false).ctl, 0u);
  EXPECT_EQ(encode_memcpy(1, 2, 3, 4, true, false).ctl, kCtlIntEn);
  EXPECT_EQ(encode_memcpy(1, 2, 3, 4, true, true).ctl, kCtlIntEn | kCtlComplWrite);
  EXPECT_EQ(encode_memcpy(0, 0, 0x80000000u, 0, false, false).size, 0x80000000u);
}

TEST(IoatEncoding, NullDescriptorAsTheKernelStartsAChannel) {
  // ioat_start_null_desc: ctl = null | int_en | compl_write, size
  // NULL_DESC_BUFFER_SIZE (1), no addresses.
  const DmaDescriptor d = encode_null(0xabc0, true, true);
  EXPECT_EQ(d.ctl, kernel_ctl([](auto& b) {
              b.null = 1;
              b.int_en = 1;
              b.compl_write = 1;
            }));
  EXPECT_EQ(d.size, 1u);
  EXPECT_EQ(d.src_addr, 0u);
  EXPECT_EQ(d.dst_addr, 0u);
  EXPECT_EQ(d.next, 0xabc0u);
  EXPECT_EQ(encode_null(0, false, true).ctl, kCtlNull | kCtlComplWrite);
  EXPECT_EQ(encode_null(0, false, false).ctl, kCtlNull);
}

TEST(IoatEncoding, ChanstsDecodesEveryState) {
  const std::uint64_t addr = 0x0000'0012'3456'7840;  // 64-byte aligned
  struct Case {
    std::uint64_t raw;
    ChannelState state;
    std::string_view name;
  };
  // IOAT_CHANSTS_ACTIVE/DONE/SUSPENDED/HALTED = 0..3; ARMED = 4 (SPDK).
  for (const Case& c : {Case{0, ChannelState::active, "active"}, Case{1, ChannelState::done, "done"},
                        Case{2, ChannelState::suspended, "suspended"}, Case{3, ChannelState::halted, "halted"},
                        Case{4, ChannelState::armed, "armed"}, Case{5, ChannelState::reserved, "reserved"},
                        Case{7, ChannelState::reserved, "reserved"}}) {
    const ChannelStatus s = decode_chansts(addr | c.raw);
    EXPECT_EQ(s.state, c.state) << c.raw;
    EXPECT_EQ(s.raw_state, c.raw);
    EXPECT_EQ(channel_state_name(s.state), c.name);
    EXPECT_EQ(s.completed_descriptor, addr);
    EXPECT_FALSE(s.soft_error);
    EXPECT_FALSE(s.unaffiliated_error);
  }
  const ChannelStatus errors = decode_chansts(addr | 0x10 | 0x8 | 0x3);
  EXPECT_TRUE(errors.soft_error);          // IOAT_CHANSTS_SOFT_ERR 0x10
  EXPECT_TRUE(errors.unaffiliated_error);  // IOAT_CHANSTS_UNAFFILIATED_ERR 0x8
  EXPECT_EQ(errors.state, ChannelState::halted);
  EXPECT_EQ(errors.completed_descriptor, addr);
  EXPECT_EQ(kChanStsCompletedAddrMask, ~0x3fULL);  // IOAT_CHANSTS_COMPLETED_DESCRIPTOR_ADDR
}

TEST(IoatEncoding, RegisterOffsetsMatchTheKernel) {
  EXPECT_EQ(kChanCntReg, 0x00u);     // IOAT_CHANCNT_OFFSET
  EXPECT_EQ(kXferCapReg, 0x01u);     // IOAT_XFERCAP_OFFSET
  EXPECT_EQ(kIntrCtrlReg, 0x03u);    // IOAT_INTRCTRL_OFFSET
  EXPECT_EQ(kAttnStatusReg, 0x04u);  // IOAT_ATTNSTATUS_OFFSET
  EXPECT_EQ(kVersionReg, 0x08u);     // IOAT_VER_OFFSET
  EXPECT_EQ(kDmaCapReg, 0x10u);      // IOAT_DMA_CAP_OFFSET
  EXPECT_EQ(channel_base(0), 0x80u);
  EXPECT_EQ(channel_base(1), 0x100u);  // IOAT_CHANNEL_MMIO_SIZE apart
  EXPECT_EQ(kChanCtrlReg, 0x00u);      // IOAT_CHANCTRL_OFFSET
  EXPECT_EQ(kDmaCompReg, 0x02u);       // IOAT_DMA_COMP_OFFSET
  EXPECT_EQ(kChanCmdReg, 0x04u);       // IOAT2_CHANCMD_OFFSET
  EXPECT_EQ(kDmaCountReg, 0x06u);      // IOAT_CHAN_DMACOUNT_OFFSET
  EXPECT_EQ(kChanStsReg, 0x08u);       // IOAT_CHANSTS_OFFSET
  EXPECT_EQ(kChainAddrLowReg, 0x10u);  // IOAT2_CHAINADDR_OFFSET_LOW
  EXPECT_EQ(kChainAddrHighReg, 0x14u);
  EXPECT_EQ(kChanCmpLowReg, 0x18u);  // IOAT_CHANCMP_OFFSET_LOW
  EXPECT_EQ(kChanCmpHighReg, 0x1cu);
  EXPECT_EQ(kCdarReg, 0x20u);         // IOAT_CDAR_OFFSET
  EXPECT_EQ(kChanErrReg, 0x28u);      // IOAT_CHANERR_OFFSET
  EXPECT_EQ(kChanErrMaskReg, 0x2cu);  // IOAT_CHANERR_MASK_OFFSET
  EXPECT_EQ(kPciChanErrIntCfg, 0x180u);
}

TEST(IoatEncoding, CommandControlAndInterruptBits) {
  EXPECT_EQ(kChanCmdReset, 0x20);
  EXPECT_EQ(kChanCmdSuspend, 0x04);
  EXPECT_EQ(kChanCtrlRun, 0x001d);  // IOAT_CHANCTRL_RUN = 0x1 | 0x4 | 0x8 | 0x10
  EXPECT_EQ(kIntrCtrlMasterIntEn, 0x01);
  EXPECT_EQ(kIntrCtrlMsixVectorControl, 0x08);
  EXPECT_EQ(kChanErrBits.front().bit, 0x1u);       // IOAT_CHANERR_SRC_ADDR_ERR
  EXPECT_EQ(kChanErrBits[8].bit, 0x100u);          // IOAT_CHANERR_READ_DATA_ERR
  EXPECT_EQ(kChanErrBits[9].bit, 0x200u);          // IOAT_CHANERR_WRITE_DATA_ERR
  EXPECT_EQ(kChanErrBits.back().bit, 0x40000u);    // IOAT_CHANERR_DESCRIPTOR_COUNT_ERR
  for (std::size_t i = 0; i < kChanErrBits.size(); ++i) EXPECT_EQ(kChanErrBits[i].bit, 1u << i);
}

TEST(IoatEncoding, VersionAndTransferCapacity) {
  EXPECT_EQ(kVersion3_0, 0x30);
  EXPECT_EQ(kVersion3_4, 0x34);
  EXPECT_EQ(version_major(0x32), 3u);
  EXPECT_EQ(version_minor(0x32), 2u);
  EXPECT_EQ(xfercap_bytes(0), 0u);         // the kernel gives such a device no channels
  EXPECT_EQ(xfercap_bytes(11), 0u);
  EXPECT_EQ(xfercap_bytes(12), 4096u);     // IOAT_XFERCAP_4KB
  EXPECT_EQ(xfercap_bytes(15), 32768u);    // IOAT_XFERCAP_32KB
  EXPECT_EQ(xfercap_bytes(0xe0 | 20), 1u << 20);  // bits 7:5 ignored
  EXPECT_EQ(xfercap_bytes(31), 1ull << 31);
}

TEST(IoatEncoding, DeviceIdsOfTheKernelTable) {
  EXPECT_EQ(kDeviceIds.size(), 68u);
  EXPECT_TRUE(ioat_matches(0x8086, 0x2021));   // PCI_DEVICE_ID_INTEL_IOAT_SKX
  EXPECT_TRUE(ioat_matches(0x8086, 0x0b00));   // PCI_DEVICE_ID_INTEL_IOAT_ICX
  EXPECT_TRUE(ioat_matches(0x8086, 0x6f20));   // BDX0
  EXPECT_TRUE(ioat_matches(0x8086, 0x0e2f));   // IVB9
  EXPECT_TRUE(ioat_matches(0x8086, 0x3430));   // TBG0
  EXPECT_TRUE(ioat_matches(0x8086, 0x6f53));   // BDXDE3
  EXPECT_FALSE(ioat_matches(0x8086, 0x1a38));  // an Intel ID the kernel's table lacks
  EXPECT_FALSE(ioat_matches(0x8087, 0x2021));  // another vendor
  EXPECT_FALSE(ioat_matches(0x8086, 0x6f28));  // between BDX7 and BDX8
}

}  // namespace
}  // namespace vfiolab::ioat
