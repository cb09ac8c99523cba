// Intel CBDMA (Crystal Beach DMA, "I/OAT" version 3.x): the registers, the
// legacy DMA (memcpy) descriptor and pure encoders for both.
//
// Where the numbers come from: Linux drivers/dma/ioat/registers.h (register
// offsets and bits), drivers/dma/ioat/hw.h (versions, descriptor layout and
// the PCI device IDs of ioat_pci_tbl), drivers/dma/ioat/{dma,init}.c (how
// they are used), include/linux/pci_ids.h (the IDs hw.h does not define), and
// SPDK's include/spdk/ioat_spec.h (the ARMED channel state, which the kernel
// does not name). Nothing here touches a device.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vfiolab::ioat {

// ---- Device registers, BAR0 offsets (registers.h "MMIO Device Registers").
inline constexpr std::uint32_t kChanCntReg = 0x00;    // 8-bit; channel count in bits 4:0
inline constexpr std::uint32_t kXferCapReg = 0x01;    // 8-bit; log2 of the largest transfer, bits 4:0
inline constexpr std::uint32_t kIntrCtrlReg = 0x03;   // 8-bit interrupt control
inline constexpr std::uint32_t kAttnStatusReg = 0x04; // 32-bit; a bit per channel wanting attention
inline constexpr std::uint32_t kVersionReg = 0x08;    // 8-bit; major in bits 7:4, minor in 3:0
inline constexpr std::uint32_t kDmaCapReg = 0x10;     // 32-bit capability bits
inline constexpr std::uint8_t kCountFieldMask = 0x1f; // CHANCNT and XFERCAP: "bits [4:0] valid" (init.c)

// INTRCTRL bits.
inline constexpr std::uint8_t kIntrCtrlMasterIntEn = 0x01;
inline constexpr std::uint8_t kIntrCtrlIntStatus = 0x02;
inline constexpr std::uint8_t kIntrCtrlInt = 0x04;
inline constexpr std::uint8_t kIntrCtrlMsixVectorControl = 0x08;  // one MSI-X vector per channel

// Versions (hw.h IOAT_VER_*): the 8-bit VER register reads 0x30 for 3.0.
inline constexpr std::uint8_t kVersion3_0 = 0x30;
inline constexpr std::uint8_t kVersion3_2 = 0x32;
inline constexpr std::uint8_t kVersion3_3 = 0x33;
inline constexpr std::uint8_t kVersion3_4 = 0x34;
constexpr unsigned version_major(std::uint8_t ver) { return ver >> 4; }
constexpr unsigned version_minor(std::uint8_t ver) { return ver & 0x0fu; }

// ---- Channel registers. Channel n's block starts at 0x80 * (n + 1): the
// block is IOAT_CHANNEL_MMIO_SIZE (0x80) bytes and the kernel maps channel i
// at reg_base + 0x80 * (i + 1).
inline constexpr std::uint32_t kChannelMmioSize = 0x80;
constexpr std::uint32_t channel_base(std::uint32_t channel) { return kChannelMmioSize * (channel + 1); }

// Offsets inside a channel's block (the v2+ layout that 3.x uses).
inline constexpr std::uint32_t kChanCtrlReg = 0x00;     // 16-bit channel control
inline constexpr std::uint32_t kDmaCompReg = 0x02;      // 16-bit compatibility
inline constexpr std::uint32_t kChanCmdReg = 0x04;      // 8-bit command (IOAT2_CHANCMD_OFFSET)
inline constexpr std::uint32_t kDmaCountReg = 0x06;     // 16-bit running count of descriptors handed over
inline constexpr std::uint32_t kChanStsReg = 0x08;      // 64-bit status, read with one 64-bit read
inline constexpr std::uint32_t kChainAddrLowReg = 0x10; // IOAT2_CHAINADDR_OFFSET_LOW
inline constexpr std::uint32_t kChainAddrHighReg = 0x14;
inline constexpr std::uint32_t kChanCmpLowReg = 0x18;   // completion writeback address, low half
inline constexpr std::uint32_t kChanCmpHighReg = 0x1c;
inline constexpr std::uint32_t kCdarReg = 0x20;         // 64-bit current descriptor address
inline constexpr std::uint32_t kChanErrReg = 0x28;      // 32-bit, write 1 to clear
inline constexpr std::uint32_t kChanErrMaskReg = 0x2c;

// PCI config space: the channel-error copy that versions before 3.3 also
// latch (IOAT_PCI_CHANERR_INT_OFFSET; ioat_reset_hw clears it, write 1 to clear).
inline constexpr std::uint32_t kPciChanErrIntCfg = 0x180;

// CHANCTRL bits.
inline constexpr std::uint16_t kChanCtrlIntRearm = 0x0001;
inline constexpr std::uint16_t kChanCtrlErrCompletionEn = 0x0004;
inline constexpr std::uint16_t kChanCtrlAnyErrAbortEn = 0x0008;
inline constexpr std::uint16_t kChanCtrlErrIntEn = 0x0010;
inline constexpr std::uint16_t kChanCtrlDescAddrSnoopControl = 0x0020;
inline constexpr std::uint16_t kChanCtrlChannelInUse = 0x0100;
// What the kernel writes to run a channel (IOAT_CHANCTRL_RUN): re-arm the
// interrupt, interrupt and write the completion on an error, and stop at
// any error. Writing it again re-arms the channel's interrupt.
inline constexpr std::uint16_t kChanCtrlRun =
    kChanCtrlIntRearm | kChanCtrlErrCompletionEn | kChanCtrlAnyErrAbortEn | kChanCtrlErrIntEn;

// CHANCMD bits. RESET stays set while the reset is in progress.
inline constexpr std::uint8_t kChanCmdStart = 0x01;
inline constexpr std::uint8_t kChanCmdAppend = 0x02;
inline constexpr std::uint8_t kChanCmdSuspend = 0x04;
inline constexpr std::uint8_t kChanCmdAbort = 0x08;
inline constexpr std::uint8_t kChanCmdResume = 0x10;
inline constexpr std::uint8_t kChanCmdReset = 0x20;

// CHANSTS (and the completion writeback, which carries the same value):
// bits 2:0 the channel state, bit 3 unaffiliated error, bit 4 soft error,
// bits 63:6 the address of the last completed descriptor (64-byte aligned).
inline constexpr std::uint64_t kChanStsStateMask = 0x7;
inline constexpr std::uint64_t kChanStsUnaffiliatedErr = 0x8;
inline constexpr std::uint64_t kChanStsSoftErr = 0x10;
inline constexpr std::uint64_t kChanStsCompletedAddrMask = ~std::uint64_t{0x3f};

enum class ChannelState : std::uint8_t {
  active = 0,     // IOAT_CHANSTS_ACTIVE
  done = 1,       // IOAT_CHANSTS_DONE (idle: nothing left to do)
  suspended = 2,  // IOAT_CHANSTS_SUSPENDED
  halted = 3,     // IOAT_CHANSTS_HALTED: stopped on an error, see CHANERR
  armed = 4,      // SPDK ioat_spec.h SPDK_IOAT_CHANSTS_ARMED; the kernel never tests for it
  reserved = 5,   // 5..7: no meaning given anywhere we know of
};

struct ChannelStatus {
  ChannelState state = ChannelState::active;
  std::uint8_t raw_state = 0;
  std::uint64_t completed_descriptor = 0;
  bool unaffiliated_error = false;
  bool soft_error = false;
};

constexpr ChannelStatus decode_chansts(std::uint64_t value) {
  ChannelStatus status;
  status.raw_state = static_cast<std::uint8_t>(value & kChanStsStateMask);
  status.state = status.raw_state <= 4 ? static_cast<ChannelState>(status.raw_state) : ChannelState::reserved;
  status.completed_descriptor = value & kChanStsCompletedAddrMask;
  status.unaffiliated_error = (value & kChanStsUnaffiliatedErr) != 0;
  status.soft_error = (value & kChanStsSoftErr) != 0;
  return status;
}

constexpr std::string_view channel_state_name(ChannelState state) {
  switch (state) {
    case ChannelState::active: return "active";
    case ChannelState::done: return "done";
    case ChannelState::suspended: return "suspended";
    case ChannelState::halted: return "halted";
    case ChannelState::armed: return "armed";
    case ChannelState::reserved: break;
  }
  return "reserved";
}

// CHANERR bits, named for error messages.
struct ChanErrBit {
  std::uint32_t bit;
  std::string_view name;
};
inline constexpr std::array<ChanErrBit, 19> kChanErrBits{{
    {0x00001, "source address error"},
    {0x00002, "destination address error"},
    {0x00004, "next descriptor address error"},
    {0x00008, "next descriptor alignment error"},
    {0x00010, "chain address value error"},
    {0x00020, "CHANCMD error"},
    {0x00040, "chipset uncorrectable data integrity error"},
    {0x00080, "DMA uncorrectable data integrity error"},
    {0x00100, "read data error"},
    {0x00200, "write data error"},
    {0x00400, "descriptor control error"},
    {0x00800, "descriptor length error"},
    {0x01000, "completion address error"},
    {0x02000, "interrupt configuration error"},
    {0x04000, "soft error"},
    {0x08000, "unaffiliated error"},
    {0x10000, "XOR P or CRC error"},
    {0x20000, "XOR Q error"},
    {0x40000, "descriptor count error"},
}};

// XFERCAP to the largest transfer in bytes, 0 when unusable. The kernel
// skips a device whose field reads 0 (ioat_enumerate_channels), and 12 (4 KiB)
// is the smallest value it names (IOAT_XFERCAP_4KB). The 5-bit field tops out
// at 31, so the result always fits the descriptor's 32-bit size.
constexpr std::uint64_t xfercap_bytes(std::uint8_t xfercap) {
  const unsigned log2 = xfercap & kCountFieldMask;
  if (log2 < 12) return 0;
  return std::uint64_t{1} << log2;
}

// ---- The legacy DMA descriptor (hw.h struct ioat_dma_descriptor,
// IOAT_DESC_SZ = 64 bytes). Descriptors are 64-byte aligned: CHANSTS keeps
// only bits 63:6 of their addresses.
struct DmaDescriptor {
  std::uint32_t size = 0;       // bytes to copy; never 0 (the channel faults on 0)
  std::uint32_t ctl = 0;        // kCtl* bits and the op code in bits 31:24
  std::uint64_t src_addr = 0;
  std::uint64_t dst_addr = 0;
  std::uint64_t next = 0;       // the following descriptor's bus address
  std::uint64_t reserved1 = 0;
  std::uint64_t reserved2 = 0;
  std::uint64_t user1 = 0;      // ignored by the device: driver data
  std::uint64_t user2 = 0;
};
inline constexpr std::size_t kDescriptorSize = 64;
inline constexpr std::size_t kDescriptorAlign = 64;
static_assert(sizeof(DmaDescriptor) == kDescriptorSize);
static_assert(offsetof(DmaDescriptor, size) == 0);
static_assert(offsetof(DmaDescriptor, ctl) == 4);
static_assert(offsetof(DmaDescriptor, src_addr) == 8);
static_assert(offsetof(DmaDescriptor, dst_addr) == 16);
static_assert(offsetof(DmaDescriptor, next) == 24);
static_assert(offsetof(DmaDescriptor, reserved1) == 32);
static_assert(offsetof(DmaDescriptor, user1) == 48);

// ctl bits, in the order of hw.h's ctl_f bitfield (least significant first).
inline constexpr std::uint32_t kCtlIntEn = 1u << 0;          // interrupt when this one completes
inline constexpr std::uint32_t kCtlSrcSnoopDisable = 1u << 1;
inline constexpr std::uint32_t kCtlDestSnoopDisable = 1u << 2;
inline constexpr std::uint32_t kCtlComplWrite = 1u << 3;     // write CHANSTS to the CHANCMP address
inline constexpr std::uint32_t kCtlFence = 1u << 4;          // finish earlier descriptors' writes first
inline constexpr std::uint32_t kCtlNull = 1u << 5;           // move no data
inline constexpr std::uint32_t kCtlSrcPageBreak = 1u << 6;
inline constexpr std::uint32_t kCtlDestPageBreak = 1u << 7;
inline constexpr std::uint32_t kCtlBundle = 1u << 8;
inline constexpr std::uint32_t kCtlDestDca = 1u << 9;
inline constexpr std::uint32_t kCtlHint = 1u << 10;
inline constexpr unsigned kCtlOpShift = 24;                  // op: bits 31:24
inline constexpr std::uint32_t kCtlOpMask = 0xffu << kCtlOpShift;
inline constexpr std::uint8_t kOpCopy = 0x00;                // IOAT_OP_COPY

// The size the kernel gives a NULL descriptor (NULL_DESC_BUFFER_SIZE in
// dma.h): "channel returns error when size is 0".
inline constexpr std::uint32_t kNullDescriptorSize = 1;

constexpr std::uint32_t encode_ctl(std::uint8_t op, bool interrupt, bool completion_write, bool fence = false,
                                   bool null = false) {
  return (std::uint32_t{op} << kCtlOpShift) | (interrupt ? kCtlIntEn : 0u) |
         (completion_write ? kCtlComplWrite : 0u) | (fence ? kCtlFence : 0u) | (null ? kCtlNull : 0u);
}

// One copy of `size` bytes; `next` is the descriptor the channel fetches
// after this one once DMACOUNT allows it.
constexpr DmaDescriptor encode_memcpy(std::uint64_t src, std::uint64_t dst, std::uint32_t size, std::uint64_t next,
                                      bool interrupt, bool completion_write) {
  DmaDescriptor d;
  d.size = size;
  d.ctl = encode_ctl(kOpCopy, interrupt, completion_write);
  d.src_addr = src;
  d.dst_addr = dst;
  d.next = next;
  return d;
}

// A NULL descriptor: a copy op with the null bit, no addresses. The kernel
// starts each channel with one (ioat_start_null_desc); with `interrupt` set
// it makes the channel raise its interrupt and nothing else.
constexpr DmaDescriptor encode_null(std::uint64_t next, bool interrupt, bool completion_write) {
  DmaDescriptor d;
  d.size = kNullDescriptorSize;
  d.ctl = encode_ctl(kOpCopy, interrupt, completion_write, false, true);
  d.next = next;
  return d;
}

// ---- PCI device IDs (vendor 0x8086) of ioat_pci_tbl in Linux 6.12
// drivers/dma/ioat/init.c: every one is I/OAT 3.0 or later.
inline constexpr std::uint16_t kIntelVendorId = 0x8086;
inline constexpr auto kDeviceIds = std::to_array<std::uint16_t>({
    // 3.0: Tylersburg (TBG0..3 are 0x3430..3, TBG4..7 are 0x3429..c).
    0x3430, 0x3431, 0x3432, 0x3433, 0x3429, 0x342a, 0x342b, 0x342c,
    // 3.2: Jasper Forest (JSF0..9).
    0x3710, 0x3711, 0x3712, 0x3713, 0x3714, 0x3715, 0x3716, 0x3717, 0x3718, 0x3719,
    // Sandy Bridge-EP (SNB0..9).
    0x3c20, 0x3c21, 0x3c22, 0x3c23, 0x3c24, 0x3c25, 0x3c26, 0x3c27, 0x3c2e, 0x3c2f,
    // Ivy Bridge-EP (IVB0..9).
    0x0e20, 0x0e21, 0x0e22, 0x0e23, 0x0e24, 0x0e25, 0x0e26, 0x0e27, 0x0e2e, 0x0e2f,
    // Haswell-EP (HSW0..9).
    0x2f20, 0x2f21, 0x2f22, 0x2f23, 0x2f24, 0x2f25, 0x2f26, 0x2f27, 0x2f2e, 0x2f2f,
    // Broadwell-EP (BDX0..9).
    0x6f20, 0x6f21, 0x6f22, 0x6f23, 0x6f24, 0x6f25, 0x6f26, 0x6f27, 0x6f2e, 0x6f2f,
    // Skylake-SP (SKX; the kernel runs it as 3.2).
    0x2021,
    // 3.3: Atom (BWD0..3) and Broadwell-DE (BDXDE0..3), "the same DMA silicon".
    0x0c50, 0x0c51, 0x0c52, 0x0c53, 0x6f50, 0x6f51, 0x6f52, 0x6f53,
    // 3.4: Ice Lake-SP (ICX).
    0x0b00,
});

constexpr bool is_ioat_device(std::uint16_t vendor, std::uint16_t device) {
  if (vendor != kIntelVendorId) return false;
  for (std::uint16_t id : kDeviceIds) {
    if (id == device) return true;
  }
  return false;
}
// The same, as the driver's probe asks it.
constexpr bool ioat_matches(std::uint16_t vendor, std::uint16_t device) { return is_ioat_device(vendor, device); }

}  // namespace vfiolab::ioat
