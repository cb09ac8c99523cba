// The edu device copies in two steps through its internal buffer: memory to
// buffer (a DMA read), then buffer to memory (a DMA write). Each DMA is one
// command and completes about 100 ms of virtual time after it is started.
// The device ignores the outcome of its DMA, so an IOMMU fault is invisible
// to the driver: a faulting read fills the buffer with whatever the bus
// returned and a faulting write is dropped.
#include "edu/edu.h"

#include "vfiolab/mmio.h"

#include <fmt/format.h>

#include <cerrno>
#include <string_view>
#include <thread>

namespace vfiolab::edu {
namespace {

constexpr std::uint16_t kVendorQemu = 0x1234;
constexpr std::uint16_t kDeviceEdu = 0x11e8;

// BAR0 registers (QEMU docs/specs/edu.rst).
constexpr std::size_t kRegIdentification = 0x00;  // 0xRRrr00ed: major, minor, 0x00, 0xed
constexpr std::size_t kRegRaiseIrq = 0x60;         // write: interrupt status |= value, interrupt raised
constexpr std::size_t kRegAckIrq = 0x64;           // write: interrupt status &= ~value
constexpr std::size_t kRegDmaSrc = 0x80;           // 64-bit
constexpr std::size_t kRegDmaDst = 0x88;           // 64-bit
constexpr std::size_t kRegDmaCount = 0x90;         // 64-bit
constexpr std::size_t kRegDmaCmd = 0x98;           // 64-bit
constexpr std::uint64_t kDmaRun = 1u << 0;         // start; clear again when done
constexpr std::uint64_t kDmaToMemory = 1u << 1;    // direction: 0 memory -> buffer, 1 buffer -> memory
constexpr std::uint64_t kDmaBuffer = 0x40000;      // the internal buffer's address in DMA commands
constexpr std::uint64_t kDmaBufferSize = 4096;
// QEMU 7.2 checks that a transfer's end lies strictly inside the buffer and
// stops the whole machine (hw_error) when it does not, so a full 4096-byte
// transfer is refused there: one byte less is the most every QEMU takes.
// Where the emulator is known to take the whole buffer (the lab probes it,
// lab/run), DriverOptions::edu_full_buffer lets copies use all of it.
constexpr std::uint64_t kMaxTransfer = kDmaBufferSize - 1;
// The device masks DMA addresses to 28 bits (its default dma_mask).
constexpr std::uint64_t kDmaLimit = (1ull << 28) - 1;
// A bit of the interrupt status that send_msi() raises and acknowledges.
constexpr std::uint32_t kSoftIrq = 1u << 31;
// A copy that repeats this many times fits easily in memcpy_wait's default
// timeout at 200 ms per copy.
constexpr std::uint64_t kMaxCount = 16;

class EduDriver final : public Driver {
 public:
  EduDriver(PciDevice& device, const DriverOptions& options)
      : Driver(device), max_transfer_(options.edu_full_buffer ? kDmaBufferSize : kMaxTransfer) {}
  std::string_view name() const override { return kName; }
  std::uint64_t region_size() const override { return 4096; }  // the device has no rings
  std::uint64_t iova_limit() const override { return kDmaLimit; }
  bool reports_dma_errors() const override { return false; }

 protected:
  Result<void> do_init() override {
    if (!bar0_) {
      return std::unexpected(driver_error(ENODEV, "edu init", "BAR0 is not mapped"));
    }
    const std::uint32_t id = read32(kRegIdentification);
    if ((id & 0xff) != 0xed) {
      return std::unexpected(driver_error(ENODEV, "edu init", fmt::format("identification register reads {:#x}", id)));
    }
    if (dma_busy()) return std::unexpected(driver_error(EBUSY, "edu init", "a DMA is still running"));
    VFIOLAB_TRY(device().enable_irqs(IrqIndex::msi, 1));
    write32(kRegAckIrq, ~0u);
    set_limits(max_transfer_, kMaxCount, 0);
    return {};
  }

  void do_remove() override {
    // A DMA cannot be cancelled; let a running one finish before the
    // memory it targets may go away.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (dma_busy() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    if (bar0_) write32(kRegAckIrq, ~0u);
    (void)device().disable_irqs(IrqIndex::msi);
  }

  Result<void> do_memcpy_start(std::uint64_t src, std::uint64_t dst, std::uint64_t size,
                               std::uint64_t count) override {
    copy_ = {src, dst, size};
    steps_left_ = 2 * count;
    start_step();
    return {};
  }

  Result<void> do_memcpy_wait(std::chrono::steady_clock::time_point deadline) override {
    for (;;) {
      if (!dma_busy()) {
        if (--steps_left_ == 0) return {};
        start_step();
        continue;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return std::unexpected(driver_error(
            ETIMEDOUT, "memcpy_wait", fmt::format("DMA still running ({} steps left)", steps_left_)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  Result<void> do_send_msi() override {
    write32(kRegRaiseIrq, kSoftIrq);
    write32(kRegAckIrq, kSoftIrq);
    return {};
  }
  // With MSI off, edu holds INTx asserted while any interrupt status bit is
  // set (edu_raise_irq / edu_lower_irq in QEMU's hw/misc/edu.c).
  Result<void> do_set_intx(bool asserted) override {
    write32(asserted ? kRegRaiseIrq : kRegAckIrq, kSoftIrq);
    return {};
  }

 private:
  // Even steps read the source into the buffer, odd steps write the buffer
  // out to the destination.
  void start_step() {
    const bool to_memory = steps_left_ % 2 == 1;
    write64(kRegDmaSrc, to_memory ? kDmaBuffer : copy_.src_iova);
    write64(kRegDmaDst, to_memory ? copy_.dst_iova : kDmaBuffer);
    write64(kRegDmaCount, copy_.size);
    write64(kRegDmaCmd, kDmaRun | (to_memory ? kDmaToMemory : 0));
  }
  bool dma_busy() const { return read64(kRegDmaCmd) & kDmaRun; }

  std::uint32_t read32(std::size_t offset) const { return bar0_.read32(offset); }
  std::uint64_t read64(std::size_t offset) const { return bar0_.read64(offset); }
  void write32(std::size_t offset, std::uint32_t value) { bar0_.write32(offset, value); }
  void write64(std::size_t offset, std::uint64_t value) { bar0_.write64(offset, value); }

  const std::uint64_t max_transfer_;
  Mmio bar0_{device().bar(0).address()};
  CopyChunk copy_;
  std::uint64_t steps_left_ = 0;
};

}  // namespace

bool probe(const PciDevice& device) {
  return device.vendor_id() == kVendorQemu && device.device_id() == kDeviceEdu;
}

DriverHandle create(PciDevice& device, const DriverOptions& options) {
  return make_driver<EduDriver>(device, options);
}

}  // namespace vfiolab::edu
