// The 82576 PF's driver: the whole port is its own, so it resets it, brings
// the link up, filters for the loopback address alone and loops the MAC
// back, around the copies of loopback_driver.h on PF queue 0.
#include "igb/igb.h"
#include "igb/loopback_driver.h"

#include <algorithm>

namespace vfiolab::igb {
namespace {

constexpr unsigned kQueue = 0;

class PfDriver final : public LoopbackDriver {
 public:
  PfDriver(PciDevice& device, const DriverOptions& options)
      : LoopbackDriver(device, pf_queue(kQueue)), options_(options) {}
  std::string_view name() const override { return kName; }

 protected:
  Result<void> may_drive() const override { return check_consent(device(), options_); }

  Result<void> do_init() override {
    VFIOLAB_TRY(check_region());
    VFIOLAB_TRY(check_no_vfs());
    VFIOLAB_TRY(port().reset());
    VFIOLAB_TRY(start_rings());
    port().msix_mode();
    set_up_interrupts(kIvarCount);
    VFIOLAB_TRY(port().start_link());
    port().filter_exactly(kLoopbackMac, 0);
    write32(kMrqc, 0);  // one queue: no RSS, no VMDq pools
    VFIOLAB_TRY(set_up_queues());
    port().enable_loopback();
    return finish_init(kLoopbackMac);
  }

  void do_remove() override {
    // Best effort: the reset stops the device's DMA whatever its outcome,
    // and remove() has nothing to report it to.
    if (bar0()) (void)port().reset();
    (void)device().disable_irqs(IrqIndex::msix);
  }

 private:
  Port port() const { return Port(device(), bar0()); }

  // With VFs enabled, queue n belongs to VF n % 8: QEMU's model then reads
  // and writes queue 0's descriptors and buffers as VF 0, through VF 0's
  // IOMMU domain, not the PF's.
  Result<void> check_no_vfs() const {
    VFIOLAB_ASSIGN_OR_RETURN(const unsigned vfs, enabled_vfs(device()));
    if (vfs == 0) return {};
    Error error = driver_error(EBUSY, "igb init",
                               fmt::format("{} VFs are enabled, and queue 0, the driver's, is VF 0's then; "
                                           "set sriov_numvfs to 0 first",
                                           vfs));
    error.unsupported = true;
    return std::unexpected(std::move(error));
  }

  const DriverOptions options_;
};

}  // namespace

bool probe(const PciDevice& device) {
  return device.vendor_id() == kVendorIntel &&
         std::find(kDevice82576.begin(), kDevice82576.end(), device.device_id()) != kDevice82576.end();
}

DriverHandle create(PciDevice& device, const DriverOptions& options) {
  return make_driver<PfDriver>(device, options);
}

}  // namespace vfiolab::igb
