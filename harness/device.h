// Helpers for device tests: open what a test needs, turning "the kernel or
// machine lacks this" into a SKIP with the reason and anything else into a
// failure with the library's message.
#pragma once

#include "check.h"
#include "harness.h"

#include "vfiolab/error.h"
#include "vfiolab/iommu.h"
#include "vfiolab/memory.h"
#include "vfiolab/pci_device.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vfiolab::harness {

// Every IOMMU mode, for INSTANTIATE_TEST_SUITE_P.
inline std::vector<IommuMode> all_modes() {
  std::vector<IommuMode> modes;
  for (const auto& info : all_iommu_modes()) modes.push_back(info.mode);
  return modes;
}

// One name per IOMMU mode, for INSTANTIATE_TEST_SUITE_P.
inline std::string mode_variant_name(const testing::TestParamInfo<IommuMode>& info) {
  return std::string(iommu_mode_info(info.param).name);
}

}  // namespace vfiolab::harness

// `auto var = value of expr`, or SKIP/FAIL the test (or SetUp) with the error.
#define VFIOLAB_ASSIGN_OR_SKIP(var, expr)                                  \
  auto var##_result = (expr);                                              \
  if (!var##_result) {                                                     \
    if (var##_result.error().unsupported) {                                \
      GTEST_SKIP() << var##_result.error().message();                      \
    } else {                                                               \
      FAIL() << var##_result.error().message();                            \
    }                                                                      \
  }                                                                        \
  auto var = std::move(*var##_result)

// Asserts a low-layer call failed with exactly this errno.
#define VFIOLAB_EXPECT_ERRNO(expr, expected_errno)                                                \
  do {                                                                                            \
    auto vfiolab_result_ = (expr);                                                                \
    if (vfiolab_result_) {                                                                        \
      ADD_FAILURE() << #expr << " succeeded; expected errno " << strerrorname_np(expected_errno); \
    } else {                                                                                      \
      EXPECT_EQ(vfiolab_result_.error().errnum, expected_errno)                                   \
          << vfiolab_result_.error().message() << "; expected " << strerrorname_np(expected_errno);\
    }                                                                                             \
  } while (0)
