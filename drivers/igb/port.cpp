#include "igb/port.h"

namespace vfiolab::igb {

namespace {

struct SubsystemIds {
  std::uint16_t vendor;
  std::uint16_t device;
  bool qemu() const { return vendor == kSubsystemVendorQemu && device == kSubsystemQemu; }
};

Result<SubsystemIds> subsystem_ids(const PciDevice& pf) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto vendor, pf.config_read<std::uint16_t>(kPciSubsystemVendorId));
  VFIOLAB_ASSIGN_OR_RETURN(const auto device, pf.config_read<std::uint16_t>(kPciSubsystemId));
  return SubsystemIds{vendor, device};
}

}  // namespace

Result<bool> is_qemu_model(const PciDevice& pf) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto ids, subsystem_ids(pf));
  return ids.qemu();
}

Result<void> check_consent(const PciDevice& pf, const DriverOptions& options) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto ids, subsystem_ids(pf));
  if (ids.qemu()) return {};
  return require_consent(pf, options, kName, "igb init",
                         fmt::format("{:04x}:{:04x} with subsystem {:04x}:{:04x} is not QEMU's igb, and the "
                                     "driver resets the port and puts it in loopback",
                                     pf.vendor_id(), pf.device_id(), ids.vendor, ids.device));
}

Result<unsigned> enabled_vfs(const PciDevice& pf) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto sriov, pf.find_ext_capability(kPciExtCapSriov));
  if (!sriov) return 0u;
  VFIOLAB_ASSIGN_OR_RETURN(const auto vfs, pf.config_read<std::uint16_t>(*sriov + kSriovNumVfs));
  return vfs;
}

Result<void> Port::reset() const {
  write32(kImc, ~0u);
  write32(kEimc, ~0u);
  write32(kRctl, 0);
  write32(kTctl, read32(kTctl) & ~kTctlEnable);
  write32(kCtrl, read32(kCtrl) | kCtrlGioMasterDisable);
  // The reset follows whether or not the master disable completes in time.
  (void)poll(pf_, "GIO master disable", kQueueTimeout,
             [&] { return !(read32(kStatus) & kStatusGioMasterEnable); });
  write32(kCtrl, read32(kCtrl) | kCtrlReset);
  std::this_thread::sleep_for(std::chrono::milliseconds(1));  // no register access right after the reset
  VFIOLAB_TRY(poll(pf_, "CTRL.RST", kResetTimeout, [&] { return !(read32(kCtrl) & kCtrlReset); }));
  write32(kImc, ~0u);
  write32(kEimc, ~0u);
  return {};
}

void Port::msix_mode() const {
  write32(kGpie, kGpieNsicr | kGpieMsixMode | kGpiePba);
  write32(kIms, 0);
  (void)read32(kEicr);  // read to clear
}

Result<void> Port::write_phy(std::uint32_t reg, std::uint16_t value) const {
  write32(kMdic, mdic_write(reg, value));
  VFIOLAB_TRY(poll(pf_, "MDIC write", kQueueTimeout, [&] { return (read32(kMdic) & kMdicReady) != 0; }));
  if (const std::uint32_t mdic = read32(kMdic); mdic & kMdicError) {
    return std::unexpected(device_error(
        EIO, pf_.name(), "igb init", fmt::format("PHY register {} write {:#x} failed: MDIC {:#x}", reg, value, mdic)));
  }
  return {};
}

Result<void> Port::start_link() const {
  const auto force_mac_link = [&] {
    write32(kCtrl, read32(kCtrl) | kCtrlSetLinkUp | kCtrlForceSpeed | kCtrlForceDuplex | kCtrlSpeed1000 |
                       kCtrlFullDuplex);
  };
  VFIOLAB_ASSIGN_OR_RETURN(const bool qemu, is_qemu_model(pf_));
  if (qemu) {
    // QEMU's STATUS.LU: the MAC forced, auto-negotiation restarted.
    force_mac_link();
    return write_phy(kPhyControl, kBmcrAutonegEnable | kBmcrRestartAutoneg | kBmcrSpeed1000 | kBmcrFullDuplex);
  }
  // A real port's loopback: in the PHY, at 1 Gb/s full duplex.
  VFIOLAB_TRY(write_phy(kPhyControl, kBmcrLoopback | kBmcrSpeed1000 | kBmcrFullDuplex));
  // Linux's igb waits as long before forcing the MAC in its own PHY
  // loopback self-test (igb_integrated_phy_loopback); the datasheet names
  // no time.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  force_mac_link();
  return {};
}

void Port::filter_exactly(const Mac& mac, std::uint32_t pool_bits) const {
  for (unsigned n = 0; n < kMtaEntries; ++n) write32(kMta + 4 * n, 0);
  for (unsigned n = 1; n < kRaEntries; ++n) write32(rah(n), 0);
  write32(ral(0), mac[0] | (mac[1] << 8) | (mac[2] << 16) | (std::uint32_t{mac[3]} << 24));
  write32(rah(0), mac[4] | (mac[5] << 8) | pool_bits | kRahAddressValid);
}

void Port::enable_loopback() const {
  write32(kRlpml, kMaxFrame + kFcsSize);
  write32(kRctl, kRctlEnable | kRctlLongPackets | kRctlMacLoopback | kRctlStripCrc);
  write32(kTctl, read32(kTctl) | kTctlEnable | kTctlPadShortPackets);
}

}  // namespace vfiolab::igb
