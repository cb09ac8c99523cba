// Physical Region Page entries for one transfer (NVMe Base Specification
// 2.0, 4.1.1): PRP1 is the first address (dword aligned, any offset into
// its page); the rest of the transfer is whole pages, named in PRP2 when one
// page is left, else in a list of page addresses that PRP2 points to.
#pragma once

#include <cstdint>
#include <vector>

namespace vfiolab::nvme {

struct PrpPlan {
  std::uint64_t prp1 = 0;
  std::vector<std::uint64_t> pages;  // pages after the first, in order
  bool operator==(const PrpPlan&) const = default;
};

// `page` is the controller's memory page size (a power of two).
inline PrpPlan plan_prps(std::uint64_t address, std::uint64_t size, std::uint64_t page) {
  PrpPlan plan{address, {}};
  const std::uint64_t first = page - (address & (page - 1));
  if (size <= first) return plan;
  for (std::uint64_t at = address + first; at < address + size; at += page) plan.pages.push_back(at);
  return plan;
}

}  // namespace vfiolab::nvme
