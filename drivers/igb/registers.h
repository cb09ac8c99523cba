// Intel 82576 (igb): the registers, bits and advanced descriptors the igb
// driver uses, and pure encoders for the descriptors. Nothing here touches a
// device.
//
// Where the numbers come from: the Intel 82576EB/EG datasheet (chapters 7
// and 8: descriptors, register map), Linux drivers/net/ethernet/intel/igb
// (e1000_regs.h, e1000_defines.h, e1000_82575.h) and QEMU's model of the
// part (hw/net/igb_regs.h, e1000x_regs.h, igb_core.c, igb.c), which is
// what the lab runs.
#pragma once

#include <array>
#include <cstdint>

namespace vfiolab::igb {

// ---- PCI identity.
inline constexpr std::uint16_t kVendorIntel = 0x8086;
// The 82576 physical functions (e1000_hw.h E1000_DEV_ID_82576*); QEMU's igb
// is 0x10c9. Its VF (0x10ca, kDevice82576Vf) has a register map of its own.
inline constexpr std::array<std::uint16_t, 8> kDevice82576 = {0x10c9, 0x10e6, 0x10e7, 0x10e8,
                                                              0x1526, 0x150a, 0x1518, 0x150d};
// QEMU gives a PCI device that names no subsystem its default one (hw/pci/
// pci.c pci_set_default_subsystem_id: PCI_SUBVENDOR_ID_REDHAT_QUMRANET,
// PCI_SUBDEVICE_ID_QEMU), and its igb names none (hw/net/igb.c
// igb_class_init). A real 82576 carries Intel's or its board maker's IDs.
inline constexpr std::uint16_t kSubsystemVendorQemu = 0x1af4;
inline constexpr std::uint16_t kSubsystemQemu = 0x1100;
inline constexpr std::uint32_t kPciSubsystemVendorId = 0x2c;  // config space
inline constexpr std::uint32_t kPciSubsystemId = 0x2e;
// The SR-IOV extended capability and its NumVFs register (PCIe base spec).
inline constexpr std::uint16_t kPciExtCapSriov = 0x0010;
inline constexpr std::uint32_t kSriovNumVfs = 0x10;

// ---- BAR0 registers (e1000_regs.h; datasheet 8.1 register summary).
inline constexpr std::uint32_t kCtrl = 0x00000;
inline constexpr std::uint32_t kStatus = 0x00008;
inline constexpr std::uint32_t kMdic = 0x00020;
inline constexpr std::uint32_t kRctl = 0x00100;
inline constexpr std::uint32_t kTctl = 0x00400;
inline constexpr std::uint32_t kIcr = 0x01500;
inline constexpr std::uint32_t kIms = 0x01508;
inline constexpr std::uint32_t kImc = 0x0150c;
inline constexpr std::uint32_t kGpie = 0x01514;
inline constexpr std::uint32_t kEics = 0x01520;
inline constexpr std::uint32_t kEims = 0x01524;
inline constexpr std::uint32_t kEimc = 0x01528;
inline constexpr std::uint32_t kEiac = 0x0152c;
inline constexpr std::uint32_t kEicr = 0x01580;
constexpr std::uint32_t eitr(unsigned vector) { return 0x01680 + 4 * vector; }
constexpr std::uint32_t ivar(unsigned n) { return 0x01700 + 4 * n; }  // n < kIvarCount
inline constexpr unsigned kIvarCount = 8;
inline constexpr std::uint32_t kIvarMisc = 0x01740;
inline constexpr std::uint32_t kMta = 0x05200;  // multicast table, kMtaEntries dwords
inline constexpr unsigned kMtaEntries = 128;
inline constexpr std::uint32_t kRlpml = 0x05004;
// Receive address n (< kRaEntries of the first array): RAL the first four
// bytes of the MAC address, RAH the last two and the valid bit.
constexpr std::uint32_t ral(unsigned n) { return 0x05400 + 8 * n; }
constexpr std::uint32_t rah(unsigned n) { return 0x05404 + 8 * n; }
inline constexpr unsigned kRaEntries = 16;
inline constexpr std::uint32_t kMrqc = 0x05818;
// The registers of one queue: a receive block and a transmit block, the
// same layout in both, in the PF's BAR0 and in a VF's.
struct QueueRegisters {
  std::uint32_t rx;
  std::uint32_t tx;
  constexpr std::uint32_t rdbal() const { return rx + 0x00; }
  constexpr std::uint32_t rdbah() const { return rx + 0x04; }
  constexpr std::uint32_t rdlen() const { return rx + 0x08; }
  constexpr std::uint32_t srrctl() const { return rx + 0x0c; }
  constexpr std::uint32_t rdh() const { return rx + 0x10; }
  constexpr std::uint32_t rdt() const { return rx + 0x18; }
  constexpr std::uint32_t rxdctl() const { return rx + 0x28; }
  constexpr std::uint32_t tdbal() const { return tx + 0x00; }
  constexpr std::uint32_t tdbah() const { return tx + 0x04; }
  constexpr std::uint32_t tdlen() const { return tx + 0x08; }
  constexpr std::uint32_t tdh() const { return tx + 0x10; }
  constexpr std::uint32_t tdt() const { return tx + 0x18; }
  constexpr std::uint32_t txdctl() const { return tx + 0x28; }
};
// Queue n (< 16) of the PF. With VFs enabled, queues n and n + 8 are VF n's
// (the device does their DMA as VF n).
constexpr QueueRegisters pf_queue(unsigned n) { return {0x0c000 + 0x40 * n, 0x0e000 + 0x40 * n}; }
// A VF's queue 0 in the VF's own BAR0 (the 82575-compatible addresses; the
// device maps them to PF queue n for VF n).
inline constexpr QueueRegisters kVfQueue0 = {0x02800, 0x03800};

// ---- SR-IOV: the VF and what the PF controls of it (e1000_regs.h,
// e1000_82575.h; datasheet 7.8 virtualization, 8.14).
inline constexpr std::uint16_t kDevice82576Vf = 0x10ca;
inline constexpr unsigned kMaxVfs = 8;
// In a VF's BAR0: CTRL is the VF's own control register (VTCTRL), and the
// interrupt registers (EICS, EIMS, EIMC, EIAC, EITR, IVAR) are the VF's,
// its three MSI-X vectors.
inline constexpr std::uint32_t kVfResetBit = 1u << 26;  // VTCTRL.RST, self-clearing
inline constexpr std::uint32_t kVfre = 0x00c8c;        // VF receive enables, bit n for VF n
inline constexpr std::uint32_t kVfte = 0x00c90;        // VF transmit enables
inline constexpr std::uint32_t kVflre = 0x00c88;       // VF reset events, write 1 to clear
inline constexpr std::uint32_t kVtCtl = 0x0581c;       // VMDq control
inline constexpr std::uint32_t kVtCtlDisableDefaultPool = 1u << 29;
constexpr std::uint32_t vmolr(unsigned pool) { return 0x05ad0 + 4 * pool; }  // VM offload, per pool
inline constexpr std::uint32_t kVmolrLongPackets = 1u << 16;  // LPE: frames up to RLPML (bits 13:0)
inline constexpr std::uint32_t kVmolrStripCrc = 1u << 31;
inline constexpr std::uint32_t kMrqcVmdq = 3;  // MRQC.MRQE 011b: pools by MAC address, no RSS
constexpr std::uint32_t rah_pool(unsigned pool) { return 1u << (18 + pool); }  // RAH.POOLSEL

// CTRL.
inline constexpr std::uint32_t kCtrlFullDuplex = 1u << 0;
inline constexpr std::uint32_t kCtrlGioMasterDisable = 1u << 2;
inline constexpr std::uint32_t kCtrlSetLinkUp = 1u << 6;
inline constexpr std::uint32_t kCtrlSpeed1000 = 2u << 8;
inline constexpr std::uint32_t kCtrlForceSpeed = 1u << 11;
inline constexpr std::uint32_t kCtrlForceDuplex = 1u << 12;
inline constexpr std::uint32_t kCtrlReset = 1u << 26;  // self-clearing
// STATUS.
inline constexpr std::uint32_t kStatusLinkUp = 1u << 1;
inline constexpr std::uint32_t kStatusGioMasterEnable = 1u << 19;

// MDIC: MDI access to the internal PHY, which answers at address 1.
inline constexpr std::uint32_t kMdicRegShift = 16;
inline constexpr std::uint32_t kMdicPhyShift = 21;
inline constexpr std::uint32_t kMdicOpWrite = 1u << 26;
inline constexpr std::uint32_t kMdicReady = 1u << 28;
inline constexpr std::uint32_t kMdicError = 1u << 30;
inline constexpr std::uint32_t kPhyAddress = 1;
// PHY register 0, the MII control register (BMCR; IEEE 802.3 22.2.4.1).
inline constexpr std::uint32_t kPhyControl = 0;
inline constexpr std::uint16_t kBmcrSpeed1000 = 0x0040;
inline constexpr std::uint16_t kBmcrFullDuplex = 0x0100;
inline constexpr std::uint16_t kBmcrRestartAutoneg = 0x0200;
inline constexpr std::uint16_t kBmcrAutonegEnable = 0x1000;
inline constexpr std::uint16_t kBmcrLoopback = 0x4000;
constexpr std::uint32_t mdic_write(std::uint32_t reg, std::uint16_t value) {
  return value | (reg << kMdicRegShift) | (kPhyAddress << kMdicPhyShift) | kMdicOpWrite;
}

// RCTL.
inline constexpr std::uint32_t kRctlEnable = 1u << 1;
inline constexpr std::uint32_t kRctlLongPackets = 1u << 5;  // LPE: frames up to RLPML
inline constexpr std::uint32_t kRctlMacLoopback = 1u << 6;  // LBM = 01b
inline constexpr std::uint32_t kRctlStripCrc = 1u << 26;    // SECRC
// TCTL.
inline constexpr std::uint32_t kTctlEnable = 1u << 1;
inline constexpr std::uint32_t kTctlPadShortPackets = 1u << 3;
// RXDCTL, TXDCTL.
inline constexpr std::uint32_t kQueueEnable = 1u << 25;
// RAH.
inline constexpr std::uint32_t kRahAddressValid = 1u << 31;

// SRRCTL: buffer sizes and the descriptor type of a receive queue.
inline constexpr std::uint32_t kSrrctlPacketBufferUnit = 1024;      // BSIZEPACKET, bits 6:0
inline constexpr std::uint32_t kSrrctlHeaderBufferUnit = 64;        // BSIZEHEADER, bits 11:8
inline constexpr std::uint32_t kSrrctlHeaderSplitAlways = 5u << 25;  // DESCTYPE 101b
inline constexpr std::uint32_t kSrrctlDropEnable = 1u << 31;
constexpr std::uint32_t srrctl_value(std::uint32_t packet_buffer, std::uint32_t header_buffer) {
  return (packet_buffer / kSrrctlPacketBufferUnit) | ((header_buffer / kSrrctlHeaderBufferUnit) << 8) |
         kSrrctlHeaderSplitAlways | kSrrctlDropEnable;
}

// GPIE.
inline constexpr std::uint32_t kGpieNsicr = 1u << 0;
inline constexpr std::uint32_t kGpieMsixMode = 1u << 4;
inline constexpr std::uint32_t kGpiePba = 1u << 31;

// ---- Advanced transmit data descriptor (datasheet 7.2.2.3): 16 bytes.
struct TxDescriptor {
  std::uint64_t address;
  std::uint32_t cmd_type_len;   // length 15:0, DTYP 23:20, DCMD 31:24
  std::uint32_t olinfo_status;  // STA 3:0 (DD written back), PAYLEN 31:14
};
static_assert(sizeof(TxDescriptor) == 16);
inline constexpr unsigned kTxWbStatusWord = 3;  // the 32-bit word holding DD after write-back
inline constexpr std::uint32_t kTxdTypeData = 3u << 20;  // DTYP 0011b: advanced data
inline constexpr std::uint32_t kTxdEndOfPacket = 1u << 24;
inline constexpr std::uint32_t kTxdInsertFcs = 1u << 25;
inline constexpr std::uint32_t kTxdReportStatus = 1u << 27;
inline constexpr std::uint32_t kTxdExtension = 1u << 29;  // DEXT: an advanced descriptor
inline constexpr std::uint32_t kTxdPaylenShift = 14;
inline constexpr std::uint32_t kTxdStatusDone = 1u << 0;

// A data descriptor for one buffer of a frame. The first of a frame carries
// the frame's length (PAYLEN: the whole frame when TSE is clear).
constexpr TxDescriptor tx_data(std::uint64_t address, std::uint32_t length, std::uint32_t frame_length,
                               bool end_of_packet, bool report_status) {
  return {address,
          length | kTxdTypeData | kTxdExtension | kTxdInsertFcs | (end_of_packet ? kTxdEndOfPacket : 0) |
              (report_status ? kTxdReportStatus : 0),
          frame_length << kTxdPaylenShift};
}

// ---- Advanced receive descriptor (datasheet 7.1.5): 16 bytes. Software
// writes the read format; the device writes back over it.
struct RxDescriptor {
  std::uint64_t packet_address;
  std::uint64_t header_address;  // bit 0 must be 0: DD shares it
};
static_assert(sizeof(RxDescriptor) == 16);
// Write-back format, as 32-bit words.
inline constexpr unsigned kRxWbStatusWord = 2;  // extended status 19:0, extended errors 31:20
inline constexpr unsigned kRxWbLengthWord = 3;  // packet buffer length 15:0, VLAN 31:16
inline constexpr std::uint32_t kRxdStatusDone = 1u << 0;
inline constexpr std::uint32_t kRxdStatusEndOfPacket = 1u << 1;
// Frame errors (e1000_defines.h E1000_RXDEXT_ERR_FRAME_ERR_MASK: CE, SE,
// SEQ, CXE, RXE) and a header longer than its buffer (HBO).
inline constexpr std::uint32_t kRxdFrameErrors = 0x97000000;
inline constexpr std::uint32_t kRxdHeaderBufferOverflow = 1u << 23;

}  // namespace vfiolab::igb
