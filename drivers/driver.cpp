#include "vfiolab/driver.h"

#include <fmt/format.h>

#include <cerrno>

namespace vfiolab {

void RemoveAndDelete::operator()(Driver* driver) const {
  (void)driver->remove();  // a destructor has no one to report a failure to
  std::default_delete<Driver>()(driver);
}

Result<void> require_consent(const PciDevice& device, const DriverOptions& options, std::string_view driver,
                             std::string_view operation, std::string_view why) {
  if (options.consents(driver)) return {};
  Error error = device_error(
      EPERM, device.name(), std::string(operation),
      fmt::format("refusing to run: {}. To allow it, give the {} driver consent for {} (DriverOptions::consent)",
                  why, driver, device.name()));
  error.unsupported = true;
  return std::unexpected(std::move(error));
}

Error Driver::driver_error(int errnum, std::string operation, std::string detail) const {
  std::string context = fmt::format("{} driver", name());
  if (!detail.empty()) context += ": " + detail;
  return device_error(errnum, device_.name(), std::move(operation), std::move(context));
}

Result<void> Driver::init(const DmaRegion& region) {
  if (initialized_) return std::unexpected(driver_error(EBUSY, "driver init", "already initialised"));
  if (region.size < region_size()) {
    return std::unexpected(driver_error(
        EINVAL, "driver init", fmt::format("region of {:#x} bytes; the driver needs {:#x}", region.size, region_size())));
  }
  if (region.iova > iova_limit() || region.size - 1 > iova_limit() - region.iova) {
    return std::unexpected(driver_error(EINVAL, "driver init",
                                        fmt::format("region at IOVA {:#x} size {:#x} is beyond the device's limit {:#x}",
                                                    region.iova, region.size, iova_limit())));
  }
  VFIOLAB_TRY(may_drive());
  region_ = region;
  max_memcpy_size_ = max_memcpy_count_ = 0;
  msi_vector_.reset();
  VFIOLAB_TRY(device_.set_bus_master(true));
  if (auto r = do_init(); !r) {
    do_remove();
    (void)device_.set_bus_master(false);  // the init's error is the one to report
    return r;
  }
  initialized_ = true;
  memcpy_in_flight_ = false;
  return {};
}

Result<void> Driver::remove() {
  if (!initialized_) return {};
  do_remove();
  initialized_ = false;
  memcpy_in_flight_ = false;
  return device_.set_bus_master(false);
}

Result<void> Driver::memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                                  std::uint64_t count) {
  const auto what = fmt::format("src {:#x} dst {:#x} size {:#x} count {}", src_iova, dst_iova, size, count);
  if (!initialized_) return std::unexpected(driver_error(EINVAL, "memcpy_start", what + ": driver not initialised"));
  if (memcpy_in_flight_) {
    return std::unexpected(driver_error(EBUSY, "memcpy_start", what + ": a copy is in flight; wait for it first"));
  }
  if (size == 0 || size > max_memcpy_size_) {
    return std::unexpected(
        driver_error(EINVAL, "memcpy_start", fmt::format("{}: size must be 1..{:#x}", what, max_memcpy_size_)));
  }
  if (count == 0 || count > max_memcpy_count_) {
    return std::unexpected(
        driver_error(EINVAL, "memcpy_start", fmt::format("{}: count must be 1..{}", what, max_memcpy_count_)));
  }
  for (std::uint64_t iova : {src_iova, dst_iova}) {
    if (iova > iova_limit() || size - 1 > iova_limit() - iova) {
      return std::unexpected(driver_error(
          EINVAL, "memcpy_start", fmt::format("{}: beyond the device's IOVA limit {:#x}", what, iova_limit())));
    }
  }
  VFIOLAB_TRY(do_memcpy_start(src_iova, dst_iova, size, count));
  memcpy_in_flight_ = true;
  return {};
}

Result<void> Driver::memcpy_wait(std::chrono::milliseconds timeout) {
  if (!memcpy_in_flight_) return std::unexpected(driver_error(EINVAL, "memcpy_wait", "no copy was started"));
  auto result = do_memcpy_wait(std::chrono::steady_clock::now() + timeout);
  // A timed-out copy is still in flight: the caller may wait again.
  if (result || result.error().errnum != ETIMEDOUT) memcpy_in_flight_ = false;
  return result;
}

Result<void> Driver::memcpy(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size) {
  VFIOLAB_TRY(memcpy_start(src_iova, dst_iova, size, 1));
  return memcpy_wait();
}

Result<void> Driver::send_msi() {
  if (!initialized_) return std::unexpected(driver_error(EINVAL, "send_msi", "driver not initialised"));
  if (!msi_vector_) {
    Error error = driver_error(EOPNOTSUPP, "send_msi", "the device cannot be made to send an MSI");
    error.unsupported = true;
    return std::unexpected(std::move(error));
  }
  return do_send_msi();
}

Result<void> Driver::set_intx(bool asserted) {
  if (!initialized_) return std::unexpected(driver_error(EINVAL, "set_intx", "driver not initialised"));
  return do_set_intx(asserted);
}

Result<void> Driver::do_set_intx(bool) {
  Error error = driver_error(EOPNOTSUPP, "set_intx", "the driver cannot make the device assert INTx");
  error.unsupported = true;
  return std::unexpected(std::move(error));
}

Result<std::vector<CopyChunk>> split_copy(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                                          std::uint64_t max_chunk) {
  if (max_chunk == 0) return std::unexpected(make_error(EINVAL, "split_copy", "chunk size 0"));
  if (size != 0 && (size - 1 > UINT64_MAX - src_iova || size - 1 > UINT64_MAX - dst_iova)) {
    return std::unexpected(make_error(
        EINVAL, "split_copy",
        fmt::format("src {:#x} dst {:#x} size {:#x} wraps past the top of the IOVA space", src_iova, dst_iova, size)));
  }
  std::vector<CopyChunk> chunks;
  chunks.reserve(size / max_chunk + 1);
  for (std::uint64_t done = 0; done < size;) {
    const std::uint64_t piece = std::min(max_chunk, size - done);
    chunks.push_back({src_iova + done, dst_iova + done, piece});
    done += piece;
  }
  return chunks;
}

Result<void> memcpy_chunked(Driver& driver, std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size) {
  VFIOLAB_ASSIGN_OR_RETURN(const auto chunks, split_copy(src_iova, dst_iova, size, driver.max_memcpy_size()));
  for (const CopyChunk& chunk : chunks) VFIOLAB_TRY(driver.memcpy(chunk.src_iova, chunk.dst_iova, chunk.size));
  return {};
}

}  // namespace vfiolab
