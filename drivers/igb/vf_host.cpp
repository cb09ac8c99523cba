// The PF's side of a VF's copies: what the PF's kernel driver would do for
// its VF, done by the process that drives the VF (vfiolab/drivers/igb.h).
// The PF is reset, and every pool but the VF's gets nothing: the filter's
// one address is the VF's, in its pool.
#include "igb/port.h"
#include "vfiolab/drivers/igb.h"

namespace vfiolab::igb {
namespace {

Port pf_port(const PciDevice& pf) { return Port(pf, Mmio(pf.bar(0).address())); }

}  // namespace

Result<std::unique_ptr<VfHost>> VfHost::create(PciDevice& pf, unsigned vf, const DriverOptions& options) {
  auto fail = [&](int errnum, std::string why) {
    return std::unexpected(device_error(errnum, pf.name(), "igb VF host", std::move(why)));
  };
  if (!probe(pf)) return fail(ENODEV, fmt::format("{:04x}:{:04x} is not an 82576 PF", pf.vendor_id(), pf.device_id()));
  if (!pf.bar(0).address()) return fail(ENODEV, "BAR0 is not mapped");
  VFIOLAB_TRY(check_consent(pf, options));
  VFIOLAB_ASSIGN_OR_RETURN(const unsigned vfs, enabled_vfs(pf));
  if (vf >= vfs || vf >= kMaxVfs) return fail(EINVAL, fmt::format("VF {} asked for, {} enabled", vf, vfs));

  std::unique_ptr<VfHost> host(new VfHost(pf, vf));
  const Port port = pf_port(pf);
  VFIOLAB_TRY(port.reset());
  port.msix_mode();
  VFIOLAB_TRY(port.start_link());
  // Pools by address: the VF's address goes to its pool, nothing else to
  // any (no default pool). Until the VF has reset itself, no pool may
  // receive or send.
  port.write32(kVfre, 0);
  port.write32(kVfte, 0);
  port.filter_exactly(host->mac(), rah_pool(vf));
  port.write32(kVtCtl, kVtCtlDisableDefaultPool);
  port.write32(vmolr(vf), kVmolrStripCrc | kVmolrLongPackets | (kMaxFrame + kFcsSize));
  port.write32(kMrqc, kMrqcVmdq);
  port.enable_loopback();
  return host;
}

VfHost::~VfHost() {
  // Stops every queue, the VF's included; nothing to report a failure to.
  (void)pf_port(pf_).reset();
}

Mac VfHost::mac() const { return vf_mac(vf_); }

void VfHost::vf_reset_done() {
  const Port port = pf_port(pf_);
  port.write32(kVflre, 1u << vf_);
  port.write32(kVfre, port.read32(kVfre) | (1u << vf_));
  port.write32(kVfte, port.read32(kVfte) | (1u << vf_));
}

}  // namespace vfiolab::igb
