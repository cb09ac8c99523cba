// A VF token: the UUID that a user of an SR-IOV PF on vfio-pci shares with
// the users of its VFs. Whoever opens the PF first (with a token) or sets one
// on it (VFIO_DEVICE_FEATURE_PCI_VF_TOKEN) decides it; every VF of that PF
// then opens only with the same token, given as "BDF vf_token=UUID" to
// VFIO_GROUP_GET_DEVICE_FD or with VFIO_DEVICE_BIND_FLAG_TOKEN to
// VFIO_DEVICE_BIND_IOMMUFD (see PciDevice::open).
#pragma once

#include "vfiolab/error.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace vfiolab {

struct VfToken {
  // The UUID's 16 bytes in the order its text names them (RFC 4122's
  // network order, which is what the kernel's uuid_parse() stores).
  std::array<std::uint8_t, 16> bytes{};

  // Parses the 36-character form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
  // (hex digits of either case); errors say what was wrong.
  static Result<VfToken> parse(std::string_view text);
  // The 36-character form in lower case.
  std::string str() const;

  auto operator<=>(const VfToken&) const = default;
};

}  // namespace vfiolab
