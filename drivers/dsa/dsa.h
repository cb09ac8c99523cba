// Intel Data Streaming Accelerator (DSA) driven from userspace: one group
// with one engine and one dedicated work queue, copies as MEMMOVE
// descriptors (a BATCH of them for a storm), and an MSI on demand from a
// NOOP descriptor that asks for a completion interrupt.
#pragma once

#include "dsa/registers.h"
#include "vfiolab/driver.h"

#include <cstdint>
#include <memory>
#include <string_view>

namespace vfiolab::dsa {

inline constexpr std::string_view kName = "dsa";

// Intel DSA devices that the Linux idxd driver binds (drivers/dma/idxd/init.c,
// IDs from include/linux/pci_ids.h). IAA (0x0cfe) is idxd's other device
// type, not a DSA, and has no MEMMOVE batches.
constexpr bool dsa_matches(std::uint16_t vendor, std::uint16_t device) {
  constexpr std::uint16_t kVendorIntel = 0x8086;
  return vendor == kVendorIntel && (device == 0x0b25     // DSA_SPR0: Sapphire Rapids (DSA 1.0)
                                    || device == 0x11fb  // DSA_GNRD: Granite Rapids-D
                                    || device == 0x1212  // DSA_DMR: Diamond Rapids
                                   );
}
// The same test on an open device, in the registry's form.
bool probe(const PciDevice& device);
std::unique_ptr<Driver> create(PciDevice& device);

class DsaDriver final : public Driver {
 public:
  using Driver::Driver;
  ~DsaDriver() override { (void)remove(); }
  std::string_view name() const override { return kName; }
  // The device reports translation failures in the completion record.
  bool reports_dma_errors() const override { return true; }

 protected:
  Result<void> do_init() override;
  void do_remove() override;
  Result<void> do_memcpy_start(std::uint64_t src_iova, std::uint64_t dst_iova, std::uint64_t size,
                               std::uint64_t count) override;
  Result<void> do_memcpy_wait(std::chrono::steady_clock::time_point deadline) override;
  Result<void> do_send_msi() override;

 private:
  std::uint32_t read32(std::size_t offset) const;
  std::uint64_t read64(std::size_t offset) const;
  void write32(std::size_t offset, std::uint32_t value) const;
  void write64(std::size_t offset, std::uint64_t value) const;

  // Runs a command and waits for CMDSTS to go idle; an error names the
  // command and CMDSTS's error code.
  Result<CommandStatus> run_command(Command command, std::uint32_t operand, std::string_view what);
  Result<void> submit(const HwDescriptor& descriptor);
  // Waits for the record's status byte; 0 when the deadline passed first.
  static std::uint8_t poll_status(const CompletionRecord* record, std::chrono::steady_clock::time_point deadline);
  Result<void> completion_error(std::string operation, const CompletionRecord& record, std::uint8_t status) const;
  std::string swerr_summary() const;

  std::byte* mmio_ = nullptr;
  std::byte* portal_ = nullptr;
  std::uint64_t list_capacity_ = 0;  // descriptors the batch list holds
  std::uint64_t last_count_ = 0;     // copies in the last submission
  std::uint16_t int_handle_ = 0;     // for vector 1
  bool int_handle_requested_ = false;
  bool wq_enabled_ = false;
};

}  // namespace vfiolab::dsa
