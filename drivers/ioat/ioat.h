// A userspace driver for Intel CBDMA ("ioat", I/OAT DMA 3.x) on channel 0:
// copies with legacy DMA descriptors on a ring in the driver's region, and
// MSIs raised by NULL descriptors through MSI-X vector 0.
#pragma once

#include "ioat/registers.h"
#include "vfiolab/driver.h"
#include "vfiolab/mmio.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace vfiolab::ioat {

inline constexpr std::string_view kName = "ioat";

// Intel devices that Linux's ioat driver serves (ioat::kDeviceIds).
constexpr bool ioat_matches(std::uint16_t vendor, std::uint16_t device) {
  return ioat::is_ioat_device(vendor, device);
}

class IoatDriver final : public Driver {
 public:
  explicit IoatDriver(PciDevice& device) : Driver(device) {}
  ~IoatDriver() override { (void)remove(); }

  std::string_view name() const override { return kName; }
  std::uint64_t region_size() const override { return kRegionBytes; }
  // CHANERR and a halted channel report a failed read or write.
  bool reports_dma_errors() const override { return true; }

  // The region: the completion writeback word, then the descriptor ring.
  // The ring's size divides 2^16, so DMACOUNT (16 bits) wraps with it.
  static constexpr std::uint64_t kCompletionOffset = 0;
  static constexpr std::uint64_t kRingOffset = 0x1000;
  static constexpr std::uint32_t kRingEntries = 4096;
  static constexpr std::uint64_t kRegionBytes = kRingOffset + kRingEntries * ioat::kDescriptorSize;
  static_assert(65536 % kRingEntries == 0);

 protected:
  Result<void> do_init() override;
  void do_remove() override;
  Result<void> do_memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                               std::uint64_t count) override;
  Result<void> do_memcpy_wait(std::chrono::steady_clock::time_point deadline) override;
  Result<void> do_send_msi() override;

 private:
  template <typename T>
  T read(std::uint32_t offset) const {
    return Mmio(mmio_).read<T>(offset);
  }
  template <typename T>
  void write(std::uint32_t offset, T value) const {
    Mmio(mmio_).write<T>(offset, value);
  }
  // Channel 0's registers.
  template <typename T>
  T read_chan(std::uint32_t reg) const { return read<T>(ioat::channel_base(0) + reg); }
  template <typename T>
  void write_chan(std::uint32_t reg, T value) const { write<T>(ioat::channel_base(0) + reg, value); }

  ioat::DmaDescriptor* slot(std::uint32_t position) const;
  std::uint64_t slot_iova(std::uint32_t position) const;
  volatile std::uint64_t* completion() const { return region_at<volatile std::uint64_t>(kCompletionOffset); }

  Result<void> reset_channel();
  void program_chain();
  Result<void> restart_if_needed();
  void submit(std::uint32_t descriptors);
  Result<void> wait_for(std::uint64_t descriptor_iova, std::chrono::steady_clock::time_point deadline,
                        const std::string& operation);
  Error channel_error(int errnum, std::string operation, std::string detail) const;

  std::byte* mmio_ = nullptr;        // set once the device is known to be a usable 3.x CBDMA
  std::uint8_t version_ = 0;
  std::uint32_t head_ = 0;           // ring position of the next descriptor to fill
  std::uint16_t dmacount_ = 0;       // last value written to DMACOUNT
  std::uint64_t awaited_ = 0;        // descriptor whose completion ends the copy in flight
  bool copy_pending_ = false;
  bool restart_needed_ = false;      // the channel halted: reset it before the next use
};

bool probe(const PciDevice& device);
std::unique_ptr<Driver> create(PciDevice& device);

}  // namespace vfiolab::ioat
