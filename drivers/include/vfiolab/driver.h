// Drivers in userspace: make a device copy memory (DMA) and send an MSI when a
// test asks, so the test can check the data that arrived, the faults that did
// not, and the interrupts that fired.
//
// A driver keeps its rings and descriptors in a DMA region that the test maps
// (region_size() bytes, below iova_limit()) and hands to init(). Copies name
// IOVAs, never host addresses: the device sees only what the IOMMU maps.
//
// The interface, its base code and the drivers are the drivers library
// (vfiolab-drivers, drivers/); the registry that picks one for a device is
// vfiolab/drivers.h. Adding a driver: a folder drivers/<name>/ whose header
// declares kName, probe and create, and one line in drivers/registry.cpp.
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/iommu.h"
#include "vfiolab/pci_device.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vfiolab {

// What the user allows and knows, given to a driver when it is made. Drivers
// never read the environment: a program fills this in (vfiolab's tests: from
// VFIOLAB_* variables, tests/driver_options.h).
struct DriverOptions {
  // The drivers (by name) allowed to do to this device what they do unasked
  // only to QEMU's models: nvme overwrites the first blocks of namespace 1,
  // igb resets the port and puts it in MAC loopback.
  std::vector<std::string> consent;
  // edu: the emulator takes a DMA to the last byte of the 4 KiB buffer
  // (QEMU 7.2 stops the machine on one), so copies may use all of it.
  bool edu_full_buffer = false;

  bool consents(std::string_view driver) const {
    return std::find(consent.begin(), consent.end(), driver) != consent.end();
  }
};

class Driver;
// Destroys a driver the way its owner must: remove() first, while the
// driver's own hooks still exist (a base destructor cannot call them).
struct RemoveAndDelete {
  void operator()(Driver* driver) const;
};
// A driver as probe_driver() and every create() hand it out: destroying it
// stops the device (remove()), so no driver writes a destructor.
using DriverHandle = std::unique_ptr<Driver, RemoveAndDelete>;

// For a driver's create(): a new T(args...) in its handle.
template <typename T, typename... Args>
DriverHandle make_driver(Args&&... args) {
  return DriverHandle(std::make_unique<T>(std::forward<Args>(args)...).release());
}

// For a driver that changes a real device beyond the copies asked of it:
// nothing when `options` consent to `driver` on `device`, else the refusal
// (EPERM, unsupported: a SKIP) saying what the driver would do (`why`).
Result<void> require_consent(const PciDevice& device, const DriverOptions& options, std::string_view driver,
                             std::string_view operation, std::string_view why);

class Driver {
 public:
  explicit Driver(PciDevice& device) : device_(device) {}
  // A DriverHandle calls remove() before this: a driver never outlives its
  // device running.
  virtual ~Driver() = default;
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  virtual std::string_view name() const = 0;
  PciDevice& device() const { return device_; }

  // What the test maps for the driver before init().
  virtual std::uint64_t region_size() const { return 2u << 20; }
  // The highest IOVA the device can put on the bus (its DMA mask); every
  // IOVA given to the driver, its region's included, must be at or below it.
  virtual std::uint64_t iova_limit() const { return UINT64_MAX; }
  // Whether a failed DMA (an IOMMU fault) is visible to the driver, so that
  // memcpy_wait() reports it and the copy stops there. Devices that cannot
  // tell carry on with whatever the bus returned.
  virtual bool reports_dma_errors() const = 0;

  // Brings the device up with its rings in `region` (mapped in the device's
  // IOMMU at region.iova, region_size() bytes at least). Enables the
  // device's interrupts: msi_vector() names the one send_msi() raises.
  Result<void> init(const DmaRegion& region);
  // Quiesces the device, disables its interrupts and turns bus mastering
  // off; init() may follow. Does nothing when not initialised. It always
  // does all of that; the error is bus mastering's, when it stayed on.
  // A DriverHandle calls it on destruction and drops the result.
  Result<void> remove();
  bool initialized() const { return initialized_; }

  // Limits, known after init().
  std::uint64_t max_memcpy_size() const { return max_memcpy_size_; }
  std::uint64_t max_memcpy_count() const { return max_memcpy_count_; }
  // The vector (of device().enabled_irq_index()) that send_msi() raises;
  // none when the driver cannot make the device send one.
  std::optional<std::uint32_t> msi_vector() const { return msi_vector_; }

  // Starts `count` copies of `size` bytes from src to dst (all the same
  // copy: a storm repeats it). Checks the limits, and that no copy is in
  // flight.
  Result<void> memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                            std::uint64_t count = 1);
  // Waits for the copies started last; an error when the device reported
  // one (errnum EIO) or did not finish within `timeout` (ETIMEDOUT).
  Result<void> memcpy_wait(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // memcpy_start + memcpy_wait, for one copy.
  Result<void> memcpy(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size);
  // Makes the device itself send msi_vector(); unsupported when it has none.
  Result<void> send_msi();
  // Makes the device assert its INTx line (level: it stays asserted) or
  // deassert it; unsupported for a driver that cannot. The caller disables
  // MSI and MSI-X first: a device with MSI on signals that way instead.
  Result<void> set_intx(bool asserted);

 protected:
  // Hooks for each driver. The public calls above check state and limits
  // before calling these.
  // Whether the driver may touch this device at all; checked by init()
  // before anything is written to it. An error here leaves it untouched.
  virtual Result<void> may_drive() const { return {}; }
  virtual Result<void> do_init() = 0;
  virtual void do_remove() = 0;
  virtual Result<void> do_memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                                       std::uint64_t count) = 0;
  virtual Result<void> do_memcpy_wait(std::chrono::steady_clock::time_point deadline) = 0;
  virtual Result<void> do_send_msi() = 0;
  virtual Result<void> do_set_intx(bool asserted);

  // For do_init(): where the rings go, and the limits to publish.
  const DmaRegion& region() const { return region_; }
  std::uint64_t region_iova(std::uint64_t offset) const { return region_.iova + offset; }
  template <typename T = std::byte>
  T* region_at(std::uint64_t offset) const {
    return reinterpret_cast<T*>(static_cast<std::byte*>(region_.vaddr) + offset);
  }
  void set_limits(std::uint64_t max_size, std::uint64_t max_count, std::optional<std::uint32_t> msi_vector) {
    max_memcpy_size_ = max_size;
    max_memcpy_count_ = max_count;
    msi_vector_ = msi_vector;
  }
  // An error naming this driver and device.
  Error driver_error(int errnum, std::string operation, std::string detail = {}) const;

 private:
  PciDevice& device_;
  DmaRegion region_;
  bool initialized_ = false;
  bool memcpy_in_flight_ = false;
  std::uint64_t max_memcpy_size_ = 0;
  std::uint64_t max_memcpy_count_ = 0;
  std::optional<std::uint32_t> msi_vector_;
};

// A large copy cut into pieces a driver accepts.
struct CopyChunk {
  std::uint64_t src_iova = 0;
  std::uint64_t dst_iova = 0;
  std::uint64_t size = 0;
  auto operator<=>(const CopyChunk&) const = default;
};
// Pieces of at most max_chunk bytes, in order, covering [0, size) exactly.
// Errors (EINVAL) for max_chunk 0 and for a source or destination range that
// wraps past the top of the 64-bit IOVA space.
Result<std::vector<CopyChunk>> split_copy(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                                          std::uint64_t max_chunk);
// Copies `size` bytes however large, chunk by chunk through driver.
Result<void> memcpy_chunked(Driver& driver, std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size);

}  // namespace vfiolab
