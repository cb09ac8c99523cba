// What an IOMMU driver's debugfs says about a device's page table: the size
// of the leaf entry that maps an IOVA, so a test can check that a 2 MiB or
// 1 GiB HugeTLB page became one 2 MiB or 1 GiB IOMMU mapping. Intel VT-d's
// dump (iommu/intel/<bdf>/domain_translation_struct) is read; on an IOMMU
// without such a dump the answer is "unsupported", for a SKIP.
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/sysfs.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace vfiolab {

struct IommuLeaf {
  std::uint64_t iova = 0;       // first IOVA the entry maps
  std::uint64_t page_size = 0;  // 4 KiB, 2 MiB or 1 GiB
};

// Lines read "0x<iova pfn> |\t<PML5E>\t<PML4E>\t<PDPE>[\t<PDE>[\t<PTE>]]":
// a leaf at the PDPE maps 1 GiB, at the PDE 2 MiB, at the PTE 4 KiB.
std::vector<IommuLeaf> parse_intel_translation_struct(std::string_view text);

// The leaf mapping `iova` for the device, or ENOENT when none does.
Result<IommuLeaf> iommu_leaf_for(const Bdf& bdf, std::uint64_t iova);

}  // namespace vfiolab
