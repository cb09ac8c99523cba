// The 82576 VF's driver (igbvf): the copies of loopback_driver.h on the
// VF's queue 0, through the VF's own registers and MSI-X, and as the VF on
// the bus. What only the PF controls (the port's reset and link, loopback,
// the receive filter, which VFs may receive and send) is set up by a VfHost
// on the PF (vf_host.cpp), which the VF's user opens too (with the VF
// token). QEMU's model sorts frames into pools (VMDq) and does queue n's
// DMA as VF n once that VF exists.
#include "igb/loopback_driver.h"
#include "vfiolab/drivers/igb.h"
#include "vfiolab/sysfs.h"

#include <string>

namespace vfiolab::igb {
namespace {

class VfDriver final : public LoopbackDriver {
 public:
  VfDriver(PciDevice& device, VfHost& host) : LoopbackDriver(device, kVfQueue0), host_(host) {}
  std::string_view name() const override { return kVfName; }

 protected:
  // The host checked the consent for its PF; this must be its VF.
  Result<void> may_drive() const override {
    VFIOLAB_ASSIGN_OR_RETURN(const auto vf, Sysfs().sriov_vf(host_.pf().bdf(), host_.vf()));
    if (!vf || *vf != device().bdf()) {
      return std::unexpected(driver_error(
          EINVAL, "igbvf init",
          fmt::format("this is not VF {} of the host's PF {} (that is {})", host_.vf(), host_.pf().name(),
                      vf ? vf->str() : std::string("absent"))));
    }
    return {};
  }

  Result<void> do_init() override {
    VFIOLAB_TRY(check_region());
    // The PF's state is the host's; the VF resets itself, and the host
    // answers that (its receive and transmit enables, cleared by it).
    VFIOLAB_TRY(reset_vf());
    host_.vf_reset_done();
    VFIOLAB_TRY(start_rings());
    set_up_interrupts(1);  // a VF has one IVAR for its queues
    VFIOLAB_TRY(set_up_queues());
    return finish_init(host_.mac());
  }

  void do_remove() override {
    // Best effort, as the PF's: the reset stops the VF's DMA.
    if (bar0()) (void)reset_vf();
    (void)device().disable_irqs(IrqIndex::msix);
  }

 private:
  // A VF's own reset (VTCTRL.RST): its queues stop, and the PF learns of
  // it (VFLRE) and must enable the VF's receive and transmit again.
  Result<void> reset_vf() {
    write32(kEimc, ~0u);
    write32(kCtrl, kVfResetBit);
    VFIOLAB_TRY(poll(device(), "VTCTRL.RST", kResetTimeout, [&] { return !(read32(kCtrl) & kVfResetBit); }));
    write32(kEimc, ~0u);
    return {};
  }

  VfHost& host_;
};

}  // namespace

bool probe_vf(const PciDevice& device) {
  return device.vendor_id() == kVendorIntel && device.device_id() == kDevice82576Vf;
}

DriverHandle create_vf(PciDevice& vf, VfHost& host) { return make_driver<VfDriver>(vf, host); }

}  // namespace vfiolab::igb
