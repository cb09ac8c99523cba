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
// lab runs the probe in parts and checks them once). Exit 0 pass, 1 fail,
// 4 skip.
#include "vfiolab/ktap.h"
#include "vfiolab/memory.h"
#include "vfiolab/pci_device.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <optional>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace vfiolab;
using namespace std::chrono_literals;

constexpr int kExitPass = 0;
constexpr int kExitFail = 1;
constexpr int kExitSkip = 4;

struct Outcome {
  ktap::Directive directive = ktap::Directive::none;  // skip, or none
  bool ok = true;
  std::vector<std::string> notes;
};

// A test step: throws VfioError or returns notes; an unsupported error is a
// SKIP with its message. Each result is printed as soon as its step ends, so
// a long probe shows its progress live; the plan is counted up front.
class Run {
 public:
  explicit Run(int planned) {
    out_.header();
    out_.plan(planned);
  }

  void step(const std::string& name, const std::function<void(Outcome&)>& body) {
    Outcome outcome;
    try {
      body(outcome);
    } catch (const VfioError& e) {
      if (e.error().unsupported) {
        outcome.directive = ktap::Directive::skip;
        outcome.notes.push_back(e.what());
      } else {
        outcome.ok = false;
        outcome.notes.push_back(e.what());
      }
    } catch (const std::exception& e) {
      outcome.ok = false;
      outcome.notes.push_back(e.what());
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

  int finish() {
    fmt::print("# Totals: pass:{} fail:{} xfail:0 xpass:0 skip:{} error:0\n", passed_, failed_, skipped_);
    if (failed_) return kExitFail;
    return passed_ == 0 && skipped_ > 0 ? kExitSkip : kExitPass;
  }

 private:
  void record(const std::string& name, const Outcome& outcome) {
    for (const auto& note : outcome.notes) out_.diagnostic(note);
    if (outcome.directive == ktap::Directive::skip) {
      out_.skip(name, outcome.notes.empty() ? "" : outcome.notes.back());
      ++skipped_;
    } else {
      out_.result(outcome.ok, name);
      outcome.ok ? ++passed_ : ++failed_;
    }
  }

  ktap::Writer out_;
  int passed_ = 0, failed_ = 0, skipped_ = 0;
};

void fail_unless(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error(what);
}

std::size_t probe_size(const BackingInfo& backing) { return backing.hugetlb ? backing.page_size : 64 * 1024; }

// One buffer of each backing for the whole probe, allocated when first
// asked for: each mode and device maps and unmaps the same memory, so a
// 1 GiB page is faulted in (and zeroed) once, not once per mode and device.
// Where the pool is too small to hold them all, the other HugeTLB buffers of
// that page size are let go and the allocation tried again.
class Buffers {
 public:
  DmaBuffer& get(const BackingInfo& backing) {
    auto it = buffers_.find(backing.backing);
    if (it == buffers_.end()) {
      auto buffer = DmaBuffer::allocate(backing.backing, probe_size(backing));
      if (!buffer && buffer.error().unsupported && backing.hugetlb && release_others(backing)) {
        buffer = DmaBuffer::allocate(backing.backing, probe_size(backing));
      }
      it = buffers_.emplace(backing.backing, std::move(buffer)).first;
    }
    if (!it->second) throw VfioError(it->second.error());
    return *it->second;
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
    run.step(fmt::format("{}.map_{}", prefix, backing.name), [&](Outcome& outcome) {
      DmaBuffer& buffer = buffers.get(backing);
      IovaAllocator allocator = iommu.iova_allocator();
      std::uint64_t iova = [&] {
        auto got = allocator.allocate(buffer.size());
        if (!got) throw std::runtime_error(got.error());
        return *got;
      }();
      DmaRegion region{buffer.data(), iova, buffer.size()};
      iommu.map(region);
      std::uint64_t looked_up = check(iommu.to_iova(buffer.bytes() + buffer.size() / 2));
      fail_unless(looked_up == iova + buffer.size() / 2, fmt::format("to_iova gave {:#x}", looked_up));
      std::uint64_t unmapped = iommu.unmap(region);
      fail_unless(unmapped == buffer.size(), fmt::format("unmap reported {:#x} bytes, mapped {:#x}", unmapped, buffer.size()));
      fail_unless(!iommu.to_iova(buffer.data()), "the region is still tracked after unmap");
      outcome.notes.push_back(fmt::format("{:#x} bytes at iova {:#x}", buffer.size(), iova));
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
  run.step(prefix + ".open", [&](Outcome& outcome) {
    iommu = check(Iommu::open(mode));
    device = check(PciDevice::open(bdf_text, iommu));
    Sysfs sysfs;
    fail_unless(device->vendor_id() == sysfs.vendor(device->bdf()), "vendor ID differs from sysfs");
    fail_unless(device->device_id() == sysfs.device_id(device->bdf()), "device ID differs from sysfs");
    std::string ranges;
    for (const auto& range : iommu->iova_ranges()) ranges += fmt::format(" [{:#x}, {:#x}]", range.start, range.last);
    outcome.notes.push_back(fmt::format("{:04x}:{:04x}, {} regions, {} irq indexes, IOVA ranges{}", device->vendor_id(),
                                        device->device_id(), device->info().num_regions, device->info().num_irqs, ranges));
    opened = true;
  });
  if (!opened) {
    for (const char* step : kStepsAfterOpen) run.skip(fmt::format("{}.{}", prefix, step), "the device did not open");
    for (const BackingInfo& backing : all_backings()) {
      run.skip(fmt::format("{}.map_{}", prefix, backing.name), "the device did not open");
    }
    return;
  }

  run.step(prefix + ".bar0_mmap", [&](Outcome& outcome) {
    const Bar& bar = device->bar(0);
    if (!bar.address()) {
      outcome.directive = ktap::Directive::skip;
      outcome.notes.push_back("BAR0 is not mmap-able");
      return;
    }
    auto word = *static_cast<volatile std::uint32_t*>(bar.address());
    outcome.notes.push_back(fmt::format("BAR0 {:#x} bytes mapped at {}, first dword {:#010x}", bar.info.size,
                                        bar.address(), static_cast<std::uint32_t>(word)));
  });

  IrqIndex index = IrqIndex::msix;
  std::uint32_t vectors = 0;
  run.step(prefix + ".irqs", [&](Outcome& outcome) {
    IrqInfo msix = check(device->irq_info(IrqIndex::msix));
    IrqInfo msi = check(device->irq_info(IrqIndex::msi));
    index = msix.count > 0 ? IrqIndex::msix : IrqIndex::msi;
    vectors = msix.count > 0 ? msix.count : msi.count;
    if (vectors == 0) {
      outcome.directive = ktap::Directive::skip;
      outcome.notes.push_back("the device has neither MSI nor MSI-X");
      return;
    }
    device->enable_irqs(index, vectors);
    for (std::uint32_t v = 0; v < vectors; ++v) {
      auto before = check(device->irq_eventfd(v).read());
      fail_unless(!before, fmt::format("{} vector {} fired before its trigger", irq_index_name(index), v));
      device->trigger_irq(index, v);
      auto after = check(device->irq_eventfd(v).wait(1s));
      fail_unless(after == 1u, fmt::format("{} vector {} eventfd read {} after one trigger", irq_index_name(index), v,
                                           after ? std::to_string(*after) : "nothing"));
    }
    outcome.notes.push_back(fmt::format("{} {} vectors enabled, each triggered once and read 1", irq_index_name(index), vectors));
  });

  run.step(prefix + ".intx", [&](Outcome& outcome) {
    IrqInfo intx = check(device->irq_info(IrqIndex::intx));
    if (intx.count == 0) {
      outcome.directive = ktap::Directive::skip;
      outcome.notes.push_back("the device has no INTx pin");
      return;
    }
    device->disable_irqs(index);
    device->enable_irqs(IrqIndex::intx, 1);
    fail_unless(!check(device->irq_eventfd(0).read()), "INTx fired before its trigger");
    device->trigger_irq(IrqIndex::intx, 0);
    fail_unless(check(device->irq_eventfd(0).wait(1s)) == 1u, "INTx eventfd did not read 1 after a trigger");
    check(device->try_mask_intx());
    check(device->try_unmask_intx());
    device->disable_irqs(IrqIndex::intx);
    // Back to MSI/MSI-X for the reset step.
    if (vectors > 0) device->enable_irqs(index, vectors);
    outcome.notes.push_back("INTx enabled, triggered and read 1, masked, unmasked, disabled");
  });

  run.step(prefix + ".reset", [&](Outcome& outcome) {
    if (!device->has_reset()) {
      outcome.directive = ktap::Directive::skip;
      outcome.notes.push_back("the device has no reset (VFIO_DEVICE_FLAGS_RESET clear)");
      return;
    }
    device->reset();
    if (device->enabled_irq_index()) {
      device->trigger_irq(index, 0);
      auto fired = check(device->irq_eventfd(0).wait(1s));
      fail_unless(fired == 1u, "vector 0 does not fire after reset");
      outcome.notes.push_back(fmt::format("reset; {} vector 0 fires after it", irq_index_name(index)));
    } else {
      outcome.notes.push_back("reset");
    }
  });

  run.step(prefix + ".hot_reset_info", [&](Outcome& outcome) {
    auto devices = device->hot_reset_info();
    if (!devices) throw VfioError(devices.error());
    std::string list;
    for (const auto& d : *devices) list += " " + d.bdf.str();
    outcome.notes.push_back(fmt::format("a bus reset affects {} device(s):{}", devices->size(), list));
  });

  map_each_backing(run, buffers, prefix, *iommu);
}

void probe_sharing(Run& run, IommuMode mode, const std::string& a, const std::string& b) {
  run.step(fmt::format("{}.share.{}+{}", iommu_mode_info(mode).name, a, b), [&](Outcome& outcome) {
    auto iommu = check(Iommu::open(mode));
    auto first = check(PciDevice::open(a, iommu));
    auto second = check(PciDevice::open(b, iommu));
    DmaBuffer buffer = check(DmaBuffer::allocate(Backing::anonymous, 64 * 1024));
    IovaAllocator allocator = iommu->iova_allocator();
    auto iova = allocator.allocate(buffer.size());
    fail_unless(iova.has_value(), "no IOVA for the shared buffer");
    DmaRegion region{buffer.data(), *iova, buffer.size()};
    iommu->map(region);
    fail_unless(&first->iommu() == &second->iommu(), "the devices do not share the Iommu");
    fail_unless(iommu->unmap(region) == buffer.size(), "unmap size differs");
    outcome.notes.push_back(fmt::format("one {:#x}-byte mapping at iova {:#x} for {} and {}", buffer.size(), *iova, a, b));
  });
}

// A device in sysfs that is not on vfio-pci, for the open-error check.
std::optional<std::string> device_not_on_vfio_pci() {
  Sysfs sysfs;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/bus/pci/devices", error)) {
    auto bdf = parse_bdf(entry.path().filename().string());
    if (bdf && sysfs.driver(*bdf) != "vfio-pci") return bdf->str();
  }
  return std::nullopt;
}

void probe_open_errors(Run& run, const std::optional<std::string>& other) {
  auto expect_error = [&](const std::string& name, const std::string& bdf, const std::string& needle) {
    run.step("open_error." + name, [&](Outcome& outcome) {
      auto iommu = check(Iommu::open(kDefaultIommuMode));
      auto device = PciDevice::open(bdf, iommu);
      fail_unless(!device, fmt::format("opening '{}' succeeded", bdf));
      std::string message = device.error().message();
      fail_unless(message.find(needle) != std::string::npos,
                  fmt::format("error for '{}' does not say '{}': {}", bdf, needle, message));
      fail_unless(message.find('\n') == std::string::npos, "error is not one line");
      outcome.notes.push_back(message);
    });
  };
  expect_error("malformed_bdf", "00:04", "bad BDF");
  expect_error("absent_device", "0000:00:1e.7", "no PCI device");
  if (other) expect_error("not_on_vfio_pci", *other, "not on vfio-pci");
}

int usage() {
  fmt::print(stderr, "usage: vfiolab-probe [--mode NAME]... [--share BDF,BDF]... [--no-open-errors] BDF...   (or VFIO_SELFTESTS_BDF)\n");
  return kExitSkip;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<IommuMode> modes;
  std::vector<std::string> devices;
  std::vector<std::pair<std::string, std::string>> shares;
  bool open_errors = true;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--mode" && i + 1 < argc) {
      auto mode = iommu_mode_from_name(argv[++i]);
      if (!mode) {
        fmt::print(stderr, "vfiolab-probe: {}\n", mode.error().message());
        return kExitFail;
      }
      modes.push_back(*mode);
    } else if (arg == "--share" && i + 1 < argc) {
      std::string pair = argv[++i];
      auto comma = pair.find(',');
      if (comma == std::string::npos) return usage();
      shares.emplace_back(pair.substr(0, comma), pair.substr(comma + 1));
    } else if (arg == "--no-open-errors") {
      open_errors = false;
    } else if (arg.starts_with("-")) {
      return usage();
    } else {
      devices.push_back(arg);
    }
  }
  if (devices.empty() && shares.empty()) {
    if (const char* env = std::getenv("VFIO_SELFTESTS_BDF")) devices.push_back(env);
  }
  if (devices.empty() && shares.empty()) return usage();
  for (const auto& bdf : devices) {
    if (auto parsed = parse_bdf(bdf); !parsed) {
      fmt::print(stderr, "vfiolab-probe: {}\n", parsed.error());
      return kExitFail;
    }
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
