// vfiolab-probe: drives each named device through libvfiolab in every IOMMU
// mode and reports what worked, in KTAP. A quick "does this device and this
// kernel work with vfiolab" check, and the library's own end-to-end test.
//
//   vfiolab-probe [--mode NAME]... [--share BDF,BDF]... [--no-open-errors] BDF...
//
// Per mode and device: open, IDs against sysfs, map/lookup/unmap a buffer of
// each backing (one buffer per backing, shared by every mode and device),
// BAR0 through its mmap, every MSI/MSI-X vector enabled,
// triggered and read back through its eventfd, reset (interrupts working
// after it), hot-reset info. --share opens two devices on one Iommu and maps
// one buffer for both. The open errors for a malformed BDF, an absent device
// and a device not on vfio-pci are checked too, unless --no-open-errors (the
// lab runs the probe in parts and checks them once). Exit 0 pass, 1 fail
// (a bad argument too, named on stderr), 4 skip (no device given).
#include "vfiolab/ktap.h"
#include "vfiolab/memory.h"
#include "vfiolab/pci_device.h"
#include "vfiolab/text.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace vfiolab;
using namespace std::chrono_literals;

struct Outcome {
  ktap::Directive directive = ktap::Directive::none;  // skip, or none
  bool ok = true;
  std::vector<std::string> notes;
};

// A step's body: notes on success, or an error.
using StepBody = std::function<Result<void>(Outcome&)>;

// A condition of a step that does not hold. The text goes in as the whole
// message (no operation prefix), so it prints as it always has.
std::unexpected<Error> failure(std::string what) { return std::unexpected(make_error(0, std::move(what))); }

// Runs the steps: an unsupported error is a SKIP with its message (this
// machine cannot do it), any other error a failure. Each result is printed
// as soon as its step ends, so a long probe shows its progress live; the
// plan is counted up front.
class Run {
 public:
  explicit Run(int planned) {
    out_.header();
    out_.plan(planned);
  }

  void step(const std::string& name, const StepBody& body) {
    Outcome outcome;
    if (auto done = body(outcome); !done) {
      if (done.error().unsupported) {
        outcome.directive = ktap::Directive::skip;
      } else {
        outcome.ok = false;
      }
      outcome.notes.push_back(done.error().message());
    }
    record(name, outcome);
  }

  // A step that cannot run because an earlier one failed: a SKIP naming it,
  // so the plan still adds up.
  void skip(const std::string& name, const std::string& reason) {
    Outcome outcome;
    outcome.directive = ktap::Directive::skip;
    outcome.notes.push_back(reason);
    record(name, outcome);
  }

  // The totals line; returns the exit code.
  int finish() { return out_.finish(); }

 private:
  void record(const std::string& name, const Outcome& outcome) {
    for (const auto& note : outcome.notes) out_.diagnostic(note);
    if (outcome.directive == ktap::Directive::skip) {
      out_.skip(name, outcome.notes.empty() ? "" : outcome.notes.back());
    } else {
      out_.result(outcome.ok, name);
    }
  }

  ktap::Writer out_;  // counts the results for finish()
};

std::size_t probe_size(const BackingInfo& backing) { return backing.hugetlb ? backing.page_size : 64 * 1024; }

// One buffer of each backing for the whole probe, allocated when first
// asked for: each mode and device maps and unmaps the same memory, so a
// 1 GiB page is faulted in (and zeroed) once, not once per mode and device.
// Where the pool is too small to hold them all, the other HugeTLB buffers of
// that page size are let go and the allocation tried again.
class Buffers {
 public:
  // A failed allocation is kept too: every mode and device gets its error
  // (an empty pool's SKIP) without asking the kernel again.
  Result<DmaBuffer*> get(const BackingInfo& backing) {
    auto it = buffers_.find(backing.backing);
    if (it == buffers_.end()) {
      auto buffer = DmaBuffer::allocate(backing.backing, probe_size(backing));
      if (!buffer && buffer.error().unsupported && backing.hugetlb && release_others(backing)) {
        buffer = DmaBuffer::allocate(backing.backing, probe_size(backing));
      }
      it = buffers_.emplace(backing.backing, std::move(buffer)).first;
    }
    // Copied, not moved up (VFIOLAB_TRY would move): the failure stays for the next caller.
    if (!it->second) return std::unexpected(it->second.error());
    return &*it->second;
  }

 private:
  bool release_others(const BackingInfo& backing) {
    return std::erase_if(buffers_, [&](const auto& entry) {
             const BackingInfo& other = backing_info(entry.first);
             return entry.second && other.hugetlb && other.page_size == backing.page_size;
           }) > 0;
  }

  std::map<Backing, Result<DmaBuffer>> buffers_;
};

// Through the Iommu the device was opened on (the device stays open: a
// reopen would cost a device reset each time, 100 ms of FLR on nvme).
void map_each_backing(Run& run, Buffers& buffers, const std::string& prefix, Iommu& iommu) {
  for (const BackingInfo& backing : all_backings()) {
    run.step(fmt::format("{}.map_{}", prefix, backing.name), [&](Outcome& outcome) -> Result<void> {
      VFIOLAB_ASSIGN_OR_RETURN(auto got, buffers.get(backing));
      const DmaBuffer& buffer = *got;
      VFIOLAB_ASSIGN_OR_RETURN(auto allocator, iommu.iova_allocator());
      VFIOLAB_ASSIGN_OR_RETURN(auto iova, allocator.allocate(buffer.size()));
      DmaRegion region{buffer.data(), iova, buffer.size()};
      VFIOLAB_TRY(iommu.map(region));
      VFIOLAB_ASSIGN_OR_RETURN(auto looked_up, iommu.to_iova(buffer.bytes() + buffer.size() / 2));
      if (looked_up != iova + buffer.size() / 2) return failure(fmt::format("to_iova gave {:#x}", looked_up));
      VFIOLAB_ASSIGN_OR_RETURN(auto unmapped, iommu.unmap(region));
      if (unmapped != buffer.size()) {
        return failure(fmt::format("unmap reported {:#x} bytes, mapped {:#x}", unmapped, buffer.size()));
      }
      if (iommu.to_iova(buffer.data())) return failure("the region is still tracked after unmap");
      outcome.notes.push_back(fmt::format("{:#x} bytes at iova {:#x}", buffer.size(), iova));
      return {};
    });
  }
}

// The steps of probe_device after "open", in order (for the plan, and for
// the SKIPs when the device does not open).
constexpr std::array kStepsAfterOpen{"bar0_mmap", "irqs", "intx", "reset", "hot_reset_info"};

int steps_per_device() { return 1 + static_cast<int>(kStepsAfterOpen.size() + all_backings().size()); }

void probe_device(Run& run, Buffers& buffers, IommuMode mode, const std::string& bdf_text) {
  const std::string prefix = fmt::format("{}.{}", iommu_mode_info(mode).name, bdf_text);
  std::shared_ptr<Iommu> iommu;
  std::unique_ptr<PciDevice> device;
  bool opened = false;
  run.step(prefix + ".open", [&](Outcome& outcome) -> Result<void> {
    VFIOLAB_ASSIGN_OR_RETURN(iommu, Iommu::open(mode));
    VFIOLAB_ASSIGN_OR_RETURN(device, PciDevice::open(bdf_text, iommu));
    Sysfs sysfs;
    VFIOLAB_ASSIGN_OR_RETURN(const auto vendor, sysfs.vendor(device->bdf()));
    VFIOLAB_ASSIGN_OR_RETURN(const auto device_id, sysfs.device_id(device->bdf()));
    if (device->vendor_id() != vendor) return failure("vendor ID differs from sysfs");
    if (device->device_id() != device_id) return failure("device ID differs from sysfs");
    VFIOLAB_ASSIGN_OR_RETURN(auto ranges, iommu->iova_ranges());
    std::string range_text;
    for (const auto& range : ranges) range_text += fmt::format(" [{:#x}, {:#x}]", range.start, range.last);
    outcome.notes.push_back(fmt::format("{:04x}:{:04x}, {} regions, {} irq indexes, IOVA ranges{}",
                                        device->vendor_id(), device->device_id(), device->info().num_regions,
                                        device->info().num_irqs, range_text));
    opened = true;
    return {};
  });
  if (!opened) {
    for (const char* step : kStepsAfterOpen) run.skip(fmt::format("{}.{}", prefix, step), "the device did not open");
    for (const BackingInfo& backing : all_backings()) {
      run.skip(fmt::format("{}.map_{}", prefix, backing.name), "the device did not open");
    }
    return;
  }

  run.step(prefix + ".bar0_mmap", [&](Outcome& outcome) -> Result<void> {
    const Bar& bar = device->bar(0);
    if (!bar.address()) {
      outcome.directive = ktap::Directive::skip;
      outcome.notes.push_back("BAR0 is not mmap-able");
      return {};
    }
    auto word = *static_cast<volatile std::uint32_t*>(bar.address());
    outcome.notes.push_back(fmt::format("BAR0 {:#x} bytes mapped at {}, first dword {:#010x}", bar.info.size,
                                        bar.address(), static_cast<std::uint32_t>(word)));
    return {};
  });

  IrqIndex index = IrqIndex::msix;
  std::uint32_t vectors = 0;
  run.step(prefix + ".irqs", [&](Outcome& outcome) -> Result<void> {
    VFIOLAB_ASSIGN_OR_RETURN(auto msix, device->irq_info(IrqIndex::msix));
    VFIOLAB_ASSIGN_OR_RETURN(auto msi, device->irq_info(IrqIndex::msi));
    index = msix.count > 0 ? IrqIndex::msix : IrqIndex::msi;
    vectors = msix.count > 0 ? msix.count : msi.count;
    if (vectors == 0) {
      outcome.directive = ktap::Directive::skip;
      outcome.notes.push_back("the device has neither MSI nor MSI-X");
      return {};
    }
    VFIOLAB_TRY(device->enable_irqs(index, vectors));
    for (std::uint32_t v = 0; v < vectors; ++v) {
      VFIOLAB_ASSIGN_OR_RETURN(auto before, device->irq_eventfd(v).read());
      if (before) return failure(fmt::format("{} vector {} fired before its trigger", irq_index_name(index), v));
      VFIOLAB_TRY(device->trigger_irq(index, v));
      VFIOLAB_ASSIGN_OR_RETURN(auto after, device->irq_eventfd(v).wait(1s));
      if (after != 1u) {
        return failure(fmt::format("{} vector {} eventfd read {} after one trigger", irq_index_name(index), v,
                                   after ? std::to_string(*after) : "nothing"));
      }
    }
    outcome.notes.push_back(
        fmt::format("{} {} vectors enabled, each triggered once and read 1", irq_index_name(index), vectors));
    return {};
  });

  run.step(prefix + ".intx", [&](Outcome& outcome) -> Result<void> {
    VFIOLAB_ASSIGN_OR_RETURN(auto intx, device->irq_info(IrqIndex::intx));
    if (intx.count == 0) {
      outcome.directive = ktap::Directive::skip;
      outcome.notes.push_back("the device has no INTx pin");
      return {};
    }
    VFIOLAB_TRY(device->disable_irqs(index));
    VFIOLAB_TRY(device->enable_irqs(IrqIndex::intx, 1));
    VFIOLAB_ASSIGN_OR_RETURN(auto before, device->irq_eventfd(0).read());
    if (before) return failure("INTx fired before its trigger");
    VFIOLAB_TRY(device->trigger_irq(IrqIndex::intx, 0));
    VFIOLAB_ASSIGN_OR_RETURN(auto after, device->irq_eventfd(0).wait(1s));
    if (after != 1u) return failure("INTx eventfd did not read 1 after a trigger");
    VFIOLAB_TRY(device->mask_intx());
    VFIOLAB_TRY(device->unmask_intx());
    VFIOLAB_TRY(device->disable_irqs(IrqIndex::intx));
    // Back to MSI/MSI-X for the reset step.
    if (vectors > 0) VFIOLAB_TRY(device->enable_irqs(index, vectors));
    outcome.notes.push_back("INTx enabled, triggered and read 1, masked, unmasked, disabled");
    return {};
  });

  run.step(prefix + ".reset", [&](Outcome& outcome) -> Result<void> {
    if (!device->has_reset()) {
      outcome.directive = ktap::Directive::skip;
      outcome.notes.push_back("the device has no reset (VFIO_DEVICE_FLAGS_RESET clear)");
      return {};
    }
    VFIOLAB_TRY(device->reset());
    if (device->enabled_irq_index()) {
      VFIOLAB_TRY(device->trigger_irq(index, 0));
      VFIOLAB_ASSIGN_OR_RETURN(auto fired, device->irq_eventfd(0).wait(1s));
      if (fired != 1u) return failure("vector 0 does not fire after reset");
      outcome.notes.push_back(fmt::format("reset; {} vector 0 fires after it", irq_index_name(index)));
    } else {
      outcome.notes.push_back("reset");
    }
    return {};
  });

  run.step(prefix + ".hot_reset_info", [&](Outcome& outcome) -> Result<void> {
    // Unsupported (a SKIP) when the device has no bus reset.
    VFIOLAB_ASSIGN_OR_RETURN(auto devices, device->hot_reset_info());
    std::string list;
    for (const auto& d : devices) list += " " + d.bdf.str();
    outcome.notes.push_back(fmt::format("a bus reset affects {} device(s):{}", devices.size(), list));
    return {};
  });

  map_each_backing(run, buffers, prefix, *iommu);
}

void probe_sharing(Run& run, IommuMode mode, const std::string& a, const std::string& b) {
  run.step(fmt::format("{}.share.{}+{}", iommu_mode_info(mode).name, a, b), [&](Outcome& outcome) -> Result<void> {
    VFIOLAB_ASSIGN_OR_RETURN(auto iommu, Iommu::open(mode));
    VFIOLAB_ASSIGN_OR_RETURN(auto first, PciDevice::open(a, iommu));
    VFIOLAB_ASSIGN_OR_RETURN(auto second, PciDevice::open(b, iommu));
    VFIOLAB_ASSIGN_OR_RETURN(auto buffer, DmaBuffer::allocate(Backing::anonymous, 64 * 1024));
    VFIOLAB_ASSIGN_OR_RETURN(auto allocator, iommu->iova_allocator());
    auto iova = allocator.allocate(buffer.size());
    if (!iova) return failure("no IOVA for the shared buffer");
    DmaRegion region{buffer.data(), *iova, buffer.size()};
    VFIOLAB_TRY(iommu->map(region));
    if (&first->iommu() != &second->iommu()) return failure("the devices do not share the Iommu");
    VFIOLAB_ASSIGN_OR_RETURN(auto unmapped, iommu->unmap(region));
    if (unmapped != buffer.size()) return failure("unmap size differs");
    outcome.notes.push_back(
        fmt::format("one {:#x}-byte mapping at iova {:#x} for {} and {}", buffer.size(), *iova, a, b));
    return {};
  });
}

// A device in sysfs that is not on vfio-pci, for the open-error check.
// Iterates with an error_code throughout: an unreadable sysfs means "none".
std::optional<std::string> device_not_on_vfio_pci() {
  Sysfs sysfs;
  std::error_code error;
  for (std::filesystem::directory_iterator it("/sys/bus/pci/devices", error), end; !error && it != end;
       it.increment(error)) {
    auto bdf = parse_bdf(it->path().filename().string());
    if (bdf && sysfs.driver(*bdf).value_or(std::nullopt) != "vfio-pci") return bdf->str();
  }
  return std::nullopt;
}

void probe_open_errors(Run& run, const std::optional<std::string>& other) {
  auto expect_error = [&](const std::string& name, const std::string& bdf, const std::string& needle) {
    run.step("open_error." + name, [&](Outcome& outcome) -> Result<void> {
      VFIOLAB_ASSIGN_OR_RETURN(auto iommu, Iommu::open(kDefaultIommuMode));
      auto device = PciDevice::open(bdf, iommu);
      if (device) return failure(fmt::format("opening '{}' succeeded", bdf));
      std::string message = device.error().message();
      if (message.find(needle) == std::string::npos) {
        return failure(fmt::format("error for '{}' does not say '{}': {}", bdf, needle, message));
      }
      if (message.find('\n') != std::string::npos) return failure("error is not one line");
      outcome.notes.push_back(message);
      return {};
    });
  };
  expect_error("malformed_bdf", "00:04", "bad BDF");
  expect_error("absent_device", "0000:00:1e.7", "no PCI device");
  if (other) expect_error("not_on_vfio_pci", *other, "not on vfio-pci");
}

void usage() {
  fmt::print(stderr, "usage: vfiolab-probe [--mode NAME]... [--share BDF,BDF]... [--no-open-errors] BDF...   "
                     "(or VFIO_SELFTESTS_BDF)\n");
}

// A bad argument fails the run, naming it: a typo in a plan must not read
// as a SKIP.
int refuse(std::string_view problem) {
  fmt::print(stderr, "vfiolab-probe: {}\n", problem);
  usage();
  return ktap::kExitFail;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<IommuMode> modes;
  std::vector<std::string> devices;
  std::vector<std::pair<std::string, std::string>> shares;
  bool open_errors = true;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--mode" || arg == "--share") {
      auto value = text::option_value(argc, argv, i);
      if (!value) return refuse(value.error().message());
      if (arg == "--mode") {
        auto mode = iommu_mode_from_name(*value);
        if (!mode) return refuse(mode.error().message());
        modes.push_back(*mode);
      } else {
        const std::string pair(*value);
        auto comma = pair.find(',');
        if (comma == std::string::npos) return refuse(fmt::format("--share wants BDF,BDF, not '{}'", pair));
        shares.emplace_back(pair.substr(0, comma), pair.substr(comma + 1));
      }
    } else if (arg == "--no-open-errors") {
      open_errors = false;
    } else if (arg.starts_with("-")) {
      return refuse(fmt::format("unknown option '{}'", arg));
    } else {
      devices.push_back(arg);
    }
  }
  if (devices.empty() && shares.empty()) {
    if (const char* env = std::getenv("VFIO_SELFTESTS_BDF")) devices.push_back(env);
  }
  if (devices.empty() && shares.empty()) {
    // No device is the machine's lack, not a mistake: SKIP, as the
    // harness's programs do.
    ktap::Writer out;
    out.header();
    const int code = out.skip_all("no device: pass BDFs as the last arguments or set VFIO_SELFTESTS_BDF");
    usage();
    return code;
  }
  for (const auto& bdf : devices) {
    if (auto parsed = parse_bdf(bdf); !parsed) return refuse(parsed.error().message());
  }
  if (modes.empty()) {
    for (const auto& info : all_iommu_modes()) modes.push_back(info.mode);
  }

  const std::optional<std::string> not_on_vfio_pci = open_errors ? device_not_on_vfio_pci() : std::nullopt;
  const int planned = static_cast<int>(modes.size()) *
                          (static_cast<int>(devices.size()) * steps_per_device() + static_cast<int>(shares.size())) +
                      (open_errors ? 2 + (not_on_vfio_pci ? 1 : 0) : 0);
  Run run(planned);
  Buffers buffers;
  for (IommuMode mode : modes) {
    for (const auto& bdf : devices) probe_device(run, buffers, mode, bdf);
    for (const auto& [a, b] : shares) probe_sharing(run, mode, a, b);
  }
  if (open_errors) probe_open_errors(run, not_on_vfio_pci);
  return run.finish();
}
