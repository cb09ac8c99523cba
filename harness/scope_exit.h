// The harness's one scope guard: runs a cleanup when the scope ends, however
// it ends (a test's ASSERT_* returns early, check() throws). For cleanups
// whose result a test cannot act on any more: undo a mapping, turn an
// interrupt off, stop a guest. dismiss() keeps it from running, for a
// cleanup the test did itself and checked.
//
//   auto unmap = ScopeExit([&] { (void)iommu.unmap(region); });
#pragma once

#include <utility>

namespace vfiolab::harness {

template <typename F>
class [[nodiscard]] ScopeExit {
 public:
  explicit ScopeExit(F cleanup) : cleanup_(std::move(cleanup)) {}
  ~ScopeExit() {
    if (armed_) cleanup_();
  }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;
  void dismiss() { armed_ = false; }

 private:
  F cleanup_;
  bool armed_ = true;
};

}  // namespace vfiolab::harness

namespace vfiolab {
using harness::ScopeExit;
}  // namespace vfiolab
