// Intel Data Streaming Accelerator (DSA) driven from userspace: one group
// with one engine and one dedicated work queue, copies as MEMMOVE
// descriptors (a BATCH of them for a storm), and an MSI on demand from a
// NOOP descriptor that asks for a completion interrupt.
#pragma once

#include "vfiolab/driver.h"

#include <string_view>

namespace vfiolab::dsa {

inline constexpr std::string_view kName = "dsa";
// The DSA devices that Linux's idxd driver binds (dsa_matches).
bool probe(const PciDevice& device);
DriverHandle create(PciDevice& device, const DriverOptions& options);

}  // namespace vfiolab::dsa
