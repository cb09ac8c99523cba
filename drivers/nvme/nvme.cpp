// One admin queue and one I/O queue pair, both in the driver's region. The
// I/O completion queue has interrupts off, so a copy raises no MSI; the
// admin completion queue always interrupts on MSI-X vector 0, which is how
// send_msi() makes the controller send one (a Get Features command).
#include "nvme/nvme.h"

#include "nvme/prp.h"
#include "nvme/spec.h"
#include "vfiolab/mmio.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

namespace vfiolab::nvme {
namespace {

constexpr std::uint16_t kVendorQemu = 0x1b36;
constexpr std::uint16_t kDeviceQemuNvme = 0x0010;
constexpr std::uint32_t kClassNvme = 0x010802;

constexpr std::uint64_t kPage = 4096;  // the memory page size the driver sets (CC.MPS 0)
constexpr std::uint32_t kQueueEntries = 64;
constexpr std::uint32_t kNamespace = 1;
// Largest transfer: one PRP list page of entries.
constexpr std::uint64_t kMaxTransfer = kPage / sizeof(std::uint64_t) * kPage;
constexpr auto kAdminTimeout = std::chrono::seconds(5);

// Where things live in the region, one page each.
constexpr std::uint64_t kAdminSqOffset = 0x0000;
constexpr std::uint64_t kAdminCqOffset = 0x1000;
constexpr std::uint64_t kIoSqOffset = 0x2000;
constexpr std::uint64_t kIoCqOffset = 0x3000;
constexpr std::uint64_t kIdentifyOffset = 0x4000;
constexpr std::uint64_t kSrcPrpListOffset = 0x5000;
constexpr std::uint64_t kDstPrpListOffset = 0x6000;
constexpr std::uint64_t kRegionSize = 0x7000;

std::string status_text(const Completion& c) {
  return fmt::format("status {:#x} (type {:#x}, code {:#x})", c.status_field(), c.status_code_type(), c.status_code());
}

// A submission queue and its completion queue.
class QueuePair {
 public:
  QueuePair() = default;
  QueuePair(std::uint16_t qid, Command* sq, Completion* cq, volatile std::uint32_t* sq_doorbell,
            volatile std::uint32_t* cq_doorbell)
      : qid_(qid), sq_(sq), cq_(cq), sq_doorbell_(sq_doorbell), cq_doorbell_(cq_doorbell) {
    std::memset(static_cast<void*>(cq_), 0, kQueueEntries * sizeof(Completion));
  }

  std::uint16_t qid() const { return qid_; }
  std::uint32_t free_slots() const { return kQueueEntries - 1 - outstanding_; }

  std::uint16_t submit(Command command) {
    command.command_id = next_id_++;
    sq_[sq_tail_] = command;
    sq_tail_ = (sq_tail_ + 1) % kQueueEntries;
    ++outstanding_;
    std::atomic_thread_fence(std::memory_order_release);  // the entry before the doorbell
    *sq_doorbell_ = sq_tail_;
    return command.command_id;
  }

  std::optional<Completion> poll() {
    const volatile Completion& slot = cq_[cq_head_];
    if (((slot.status & 1) != 0) != phase_) return std::nullopt;
    std::atomic_thread_fence(std::memory_order_acquire);
    Completion entry;
    std::memcpy(&entry, const_cast<const Completion*>(&cq_[cq_head_]), sizeof entry);
    if (++cq_head_ == kQueueEntries) {
      cq_head_ = 0;
      phase_ = !phase_;
    }
    --outstanding_;
    *cq_doorbell_ = cq_head_;
    return entry;
  }

 private:
  std::uint16_t qid_ = 0;
  Command* sq_ = nullptr;
  Completion* cq_ = nullptr;
  volatile std::uint32_t* sq_doorbell_ = nullptr;
  volatile std::uint32_t* cq_doorbell_ = nullptr;
  std::uint32_t sq_tail_ = 0;
  std::uint32_t cq_head_ = 0;
  std::uint32_t outstanding_ = 0;
  bool phase_ = true;  // the controller writes phase 1 on its first pass
  std::uint16_t next_id_ = 0;
};

class NvmeDriver final : public Driver {
 public:
  NvmeDriver(PciDevice& device, const DriverOptions& options) : Driver(device), options_(options) {}
  std::string_view name() const override { return kName; }
  std::uint64_t region_size() const override { return kRegionSize; }
  // QEMU's controller completes a command whose DMA the IOMMU blocked with
  // success (its reads of memory return zeros, its writes are dropped:
  // measured with QEMU 7.2). A real controller sees a failed read of memory
  // as a completer abort and fails the command, but a blocked write to
  // memory is posted and invisible to it. So a copy may or may not report
  // the fault: memcpy_wait() passes on whatever the controller said.
  bool reports_dma_errors() const override { return false; }

 protected:
  Result<void> may_drive() const override { return check_consent(); }

  Result<void> do_init() override {
    if (!bar0_) return std::unexpected(driver_error(ENODEV, "nvme init", "BAR0 is not mapped"));
    if (region().iova % kPage) {
      return std::unexpected(driver_error(EINVAL, "nvme init", "the region's IOVA is not page aligned"));
    }
    cap_ = Capabilities{read64(kRegCap)};
    if (!cap_.nvm_command_set() || cap_.min_page_size() > kPage || cap_.max_queue_entries() < kQueueEntries) {
      return std::unexpected(driver_error(ENODEV, "nvme init",
                                          fmt::format("unsupported controller: CAP {:#x}", cap_.raw)));
    }
    VFIOLAB_TRY(disable_controller());

    auto doorbell = [&](std::uint32_t index) {
      return reinterpret_cast<volatile std::uint32_t*>(bar0_.at(kDoorbells + index * cap_.doorbell_stride()));
    };
    admin_ = QueuePair(0, region_at<Command>(kAdminSqOffset), region_at<Completion>(kAdminCqOffset), doorbell(0),
                       doorbell(1));
    io_ = QueuePair(1, region_at<Command>(kIoSqOffset), region_at<Completion>(kIoCqOffset), doorbell(2), doorbell(3));

    VFIOLAB_TRY(device().enable_irqs(IrqIndex::msix, 1));
    write32(kRegAqa, ((kQueueEntries - 1) << 16) | (kQueueEntries - 1));
    write64(kRegAsq, region_iova(kAdminSqOffset));
    write64(kRegAcq, region_iova(kAdminCqOffset));
    write32(kRegCc, kCcIoQueueEntrySizes | kCcEnable);
    VFIOLAB_TRY(wait_ready(true));

    VFIOLAB_TRY(identify());
    return create_io_queues();
  }

  void do_remove() override {
    if (bar0_) (void)disable_controller();  // deletes every queue
    (void)device().disable_irqs(IrqIndex::msix);
  }

  Result<void> do_memcpy_start(std::uint64_t src, std::uint64_t dst, std::uint64_t size,
                               std::uint64_t count) override {
    const auto what = fmt::format("src {:#x} dst {:#x} size {:#x}", src, dst, size);
    if (size % block_size_ || (src | dst) % 4) {
      return std::unexpected(driver_error(
          EINVAL, "memcpy_start",
          fmt::format("{}: size must be a multiple of the {}-byte block and addresses dword aligned", what,
                      block_size_)));
    }
    blocks_ = static_cast<std::uint32_t>(size / block_size_);
    src_ = prp_pair(plan_prps(src, size, kPage), kSrcPrpListOffset);
    dst_ = prp_pair(plan_prps(dst, size, kPage), kDstPrpListOffset);
    count_ = count;
    failure_.reset();
    submit_all(kIoWrite);
    return {};
  }

  Result<void> do_memcpy_wait(std::chrono::steady_clock::time_point deadline) override {
    for (;;) {
      while (auto completion = io_.poll()) {
        --pending_;
        if (completion->status_field() != 0 && !failure_) failure_ = *completion;
      }
      if (pending_ == 0) {
        if (failure_) {
          return std::unexpected(driver_error(
              EIO, "memcpy_wait",
              fmt::format("the {} failed: {}", writing_ ? "write of the source" : "read into the destination",
                          status_text(*failure_))));
        }
        if (!writing_) return {};
        submit_all(kIoRead);
        continue;
      }
      if (read32(kRegCsts) & kCstsFatal) {
        return std::unexpected(driver_error(
            EIO, "memcpy_wait", fmt::format("controller fatal status (CSTS.CFS) with {} commands outstanding", pending_)));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return std::unexpected(
            driver_error(ETIMEDOUT, "memcpy_wait", fmt::format("{} commands outstanding", pending_)));
      }
      std::this_thread::yield();
    }
  }

  Result<void> do_send_msi() override {
    Command get{};
    get.opcode = kAdminGetFeatures;
    get.cdw10 = kFeatureNumberOfQueues;
    VFIOLAB_TRY(admin(get, "Get Features"));
    return {};
  }

 private:
  struct Prps {
    std::uint64_t prp1 = 0;
    std::uint64_t prp2 = 0;
  };

  Result<void> check_consent() const {
    if (device().vendor_id() == kVendorQemu && device().device_id() == kDeviceQemuNvme) return {};
    return require_consent(device(), options_, kName, "nvme init",
                           fmt::format("{:04x}:{:04x} is not QEMU's NVMe controller, and a copy overwrites the "
                                       "first blocks of namespace {}",
                                       device().vendor_id(), device().device_id(), kNamespace));
  }

  Result<void> identify() {
    std::byte* buffer = region_at(kIdentifyOffset);
    Command id{};
    id.opcode = kAdminIdentify;
    id.prp1 = region_iova(kIdentifyOffset);
    id.cdw10 = kIdentifyController;
    VFIOLAB_TRY(admin(id, "Identify Controller"));
    const std::uint8_t mdts = static_cast<std::uint8_t>(buffer[kIdCtrlMdts]);
    max_transfer_ = kMaxTransfer;
    if (mdts != 0 && mdts < 40) max_transfer_ = std::min<std::uint64_t>(max_transfer_, (1ull << mdts) * cap_.min_page_size());

    id.nsid = kNamespace;
    id.cdw10 = kIdentifyNamespace;
    VFIOLAB_TRY(admin(id, "Identify Namespace"));
    std::uint64_t blocks = 0;
    std::memcpy(&blocks, buffer + kIdNsSize, sizeof blocks);
    const unsigned format = static_cast<unsigned>(buffer[kIdNsFlbas]) & 0xf;
    std::uint32_t lba_format = 0;
    std::memcpy(&lba_format, buffer + kIdNsLbaFormats + 4 * format, sizeof lba_format);
    const unsigned block_shift = (lba_format >> 16) & 0xff;
    if (blocks == 0 || block_shift < 9 || block_shift > 12) {
      return std::unexpected(driver_error(
          ENODEV, "nvme init",
          fmt::format("namespace {}: {} blocks of 2^{} bytes; need a namespace with 512..4096-byte blocks",
                      kNamespace, blocks, block_shift)));
    }
    block_size_ = 1u << block_shift;
    // NLB is 16 bits: at most 65536 blocks per command, and never more than the namespace.
    max_transfer_ = std::min({max_transfer_, std::uint64_t{65536} * block_size_, blocks * block_size_});
    return {};
  }

  Result<void> create_io_queues() {
    Command queues{};
    queues.opcode = kAdminSetFeatures;
    queues.cdw10 = kFeatureNumberOfQueues;
    queues.cdw11 = 0;  // one submission and one completion queue (zero-based counts)
    VFIOLAB_TRY(admin(queues, "Set Features (Number of Queues)"));
    VFIOLAB_TRY(admin(create_io_cq(io_.qid(), kQueueEntries, region_iova(kIoCqOffset), false, 0),
                      "Create I/O Completion Queue"));
    VFIOLAB_TRY(admin(create_io_sq(io_.qid(), kQueueEntries, region_iova(kIoSqOffset), io_.qid()),
                      "Create I/O Submission Queue"));
    // Writes then reads: every copy's command fits in the queue at once.
    set_limits(max_transfer_, kQueueEntries - 1, 0);
    return {};
  }

  Result<Completion> admin(const Command& command, std::string_view what) {
    const std::uint16_t id = admin_.submit(command);
    const auto deadline = std::chrono::steady_clock::now() + kAdminTimeout;
    for (;;) {
      if (auto completion = admin_.poll()) {
        if (completion->command_id != id) continue;  // a late answer to an earlier command
        if (completion->status_field() != 0) {
          return std::unexpected(driver_error(EIO, std::string(what), status_text(*completion)));
        }
        return *completion;
      }
      if (read32(kRegCsts) & kCstsFatal) {
        return std::unexpected(driver_error(EIO, std::string(what), "controller fatal status (CSTS.CFS)"));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return std::unexpected(driver_error(ETIMEDOUT, std::string(what), "no completion"));
      }
      std::this_thread::yield();
    }
  }

  Prps prp_pair(const PrpPlan& plan, std::uint64_t list_offset) const {
    if (plan.pages.empty()) return {plan.prp1, 0};
    if (plan.pages.size() == 1) return {plan.prp1, plan.pages[0]};
    std::memcpy(region_at(list_offset), plan.pages.data(), plan.pages.size() * sizeof(std::uint64_t));
    return {plan.prp1, region_iova(list_offset)};
  }

  void submit_all(std::uint8_t opcode) {
    writing_ = opcode == kIoWrite;
    const Prps& prps = writing_ ? src_ : dst_;
    for (std::uint64_t i = 0; i < count_; ++i) {
      io_.submit(read_write(opcode, kNamespace, 0, blocks_, prps.prp1, prps.prp2));
    }
    pending_ = count_;
  }

  Result<void> disable_controller() {
    write32(kRegCc, read32(kRegCc) & ~kCcEnable);
    return wait_ready(false);
  }

  Result<void> wait_ready(bool ready) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<std::uint32_t>(cap_.timeout_ms(), 500));
    for (;;) {
      const std::uint32_t csts = read32(kRegCsts);
      if (ready && (csts & kCstsFatal)) {
        return std::unexpected(driver_error(EIO, "nvme enable", fmt::format("CSTS {:#x}: controller fatal status", csts)));
      }
      if (((csts & kCstsReady) != 0) == ready) return {};
      if (std::chrono::steady_clock::now() >= deadline) {
        return std::unexpected(driver_error(ETIMEDOUT, ready ? "nvme enable" : "nvme disable",
                                            fmt::format("CSTS.RDY did not become {} (CSTS {:#x})", ready ? 1 : 0, csts)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  std::uint32_t read32(std::size_t offset) const { return bar0_.read32(offset); }
  std::uint64_t read64(std::size_t offset) const {
    // Two dword reads, low first: not every controller takes a 64-bit access.
    const std::uint64_t low = read32(offset);
    return low | (std::uint64_t{read32(offset + 4)} << 32);
  }
  void write32(std::size_t offset, std::uint32_t value) { bar0_.write32(offset, value); }
  void write64(std::size_t offset, std::uint64_t value) {
    write32(offset, static_cast<std::uint32_t>(value));
    write32(offset + 4, static_cast<std::uint32_t>(value >> 32));
  }

  const DriverOptions options_;
  Mmio bar0_{device().bar(0).address()};
  Capabilities cap_{0};
  QueuePair admin_;
  QueuePair io_;
  std::uint64_t max_transfer_ = 0;
  std::uint32_t block_size_ = 512;
  // The copy in flight.
  std::uint32_t blocks_ = 0;
  Prps src_;
  Prps dst_;
  std::uint64_t count_ = 0;
  std::uint64_t pending_ = 0;
  bool writing_ = false;
  std::optional<Completion> failure_;
};

}  // namespace

bool probe(const PciDevice& device) { return device.class_code() == kClassNvme; }

DriverHandle create(PciDevice& device, const DriverOptions& options) {
  return make_driver<NvmeDriver>(device, options);
}

}  // namespace vfiolab::nvme
