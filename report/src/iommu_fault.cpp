#include "vfiolab/iommu_fault.h"

#include <fcntl.h>
#include <poll.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <charconv>
#include <fstream>

namespace vfiolab {
namespace {

// The number right after `key` in text, in `base` (a hex number may start
// with "0x").
std::optional<std::uint64_t> number_after(std::string_view text, std::string_view key, int base) {
  const auto at = text.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(at + key.size());
  if (base == 16 && (rest.starts_with("0x") || rest.starts_with("0X"))) rest.remove_prefix(2);
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value, base);
  if (ec != std::errc() || end == rest.data()) return std::nullopt;
  return value;
}

// The BDF in text between `open` and the next `close`.
std::optional<Bdf> bdf_between(std::string_view text, std::string_view open, char close) {
  const auto at = text.find(open);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(at + open.size());
  const auto end = rest.find(close);
  if (end == std::string_view::npos) return std::nullopt;
  auto bdf = parse_bdf(rest.substr(0, end));
  if (!bdf) return std::nullopt;
  return *bdf;
}

std::string_view without_timestamp(std::string_view line) {
  if (line.starts_with("[")) {
    const auto close = line.find("] ");
    if (close != std::string_view::npos) return line.substr(close + 2);
  }
  return line;
}

}  // namespace

std::optional<IommuFault> parse_iommu_fault(std::string_view line) {
  const std::string_view message = without_timestamp(line);
  IommuFault fault;
  fault.message = std::string(message);
  if (message.find("NO_PASID] Request device [") != std::string_view::npos ||
      (message.find("PASID 0x") != std::string_view::npos && message.find("Request device [") != std::string_view::npos)) {
    auto address = number_after(message, "fault addr ", 16);
    fault.device = bdf_between(message, "Request device [", ']');
    if (!address || !fault.device) return std::nullopt;
    fault.address = *address;
    return fault;
  }
  if (message.find("[IO_PAGE_FAULT ") != std::string_view::npos) {
    auto address = number_after(message, " address=", 16);
    if (!address) return std::nullopt;
    fault.address = *address;
    fault.device = bdf_between(message, "device=", ' ');
    if (!fault.device) {
      // "<driver> SSSS:BB:DD.F: Event logged [...]": the device is the
      // word before the first ": ".
      const auto colon = message.find(": ");
      const auto space = message.rfind(' ', colon);
      if (colon == std::string_view::npos || space == std::string_view::npos) return std::nullopt;
      auto bdf = parse_bdf(message.substr(space + 1, colon - space - 1));
      if (!bdf) return std::nullopt;
      fault.device = *bdf;
    }
    return fault;
  }
  if (message.find(" fault from EP ") != std::string_view::npos) {
    auto endpoint = number_after(message, " fault from EP ", 10);
    auto address = number_after(message, " at ", 16);
    if (!endpoint || !address || *endpoint > 0xffff) return std::nullopt;
    fault.endpoint = static_cast<std::uint32_t>(*endpoint);
    fault.address = *address;
    return fault;
  }
  return std::nullopt;
}

bool fault_matches(const IommuFault& fault, const Bdf& bdf, std::uint64_t iova, std::uint64_t size) {
  if (fault.device) {
    // Intel's message has no segment; it parses as segment 0.
    if (fault.device->bus != bdf.bus || fault.device->device != bdf.device ||
        fault.device->function != bdf.function) {
      return false;
    }
    if (fault.device->segment != 0 && fault.device->segment != bdf.segment) return false;
  } else if (fault.endpoint) {
    const std::uint32_t rid = (std::uint32_t{bdf.bus} << 8) | (std::uint32_t{bdf.device} << 3) | bdf.function;
    if (*fault.endpoint != rid) return false;
  } else {
    return false;
  }
  constexpr std::uint64_t kPageMask = ~std::uint64_t{0xfff};
  if (size == 0) return false;
  const std::uint64_t first = iova & kPageMask;
  const std::uint64_t last = (iova + (size - 1)) & kPageMask;  // callers keep iova + size in range
  const std::uint64_t page = fault.address & kPageMask;
  return page >= first && page <= last;
}

std::optional<std::string> iommu_logs_no_faults(const Bdf& bdf, const std::filesystem::path& sys_root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path iommu = sys_root / "bus/pci/devices" / bdf.str() / "iommu";
  const std::string name = fs::read_symlink(iommu, ec).filename().string();
  if (ec || !name.starts_with("ivhd")) return std::nullopt;
  std::ifstream file(iommu / "device/subsystem_vendor");
  std::string vendor;
  if (!(file >> vendor) || vendor != "0x1af4") return std::nullopt;
  return fmt::format("{}'s IOMMU {} is QEMU's emulated AMD IOMMU (subsystem vendor 1af4), which logs no "
                     "IO_PAGE_FAULT event for a DMA it blocks",
                     bdf.str(), name);
}

std::optional<std::string> iommu_fault_irq_name(const Bdf& bdf, const std::filesystem::path& sys_root) {
  std::error_code ec;
  const auto link = std::filesystem::read_symlink(sys_root / "bus/pci/devices" / bdf.str() / "iommu", ec);
  if (ec) return std::nullopt;
  const std::string name = link.filename().string();
  if (name.starts_with("dmar")) return name;
  // virtio-iommu's unit is named after its virtio device (7.x) or that
  // device's PCI function, below the virtio device (6.12:
  // ".../0000:00:01.0/virtio0/iommu/0000:00:01.0").
  if (name.starts_with("virtio")) return name + "-event";
  const std::string owner = link.parent_path().parent_path().filename().string();
  if (link.parent_path().filename() == "iommu" && owner.starts_with("virtio")) return owner + "-event";
  return std::nullopt;
}

std::optional<std::uint64_t> interrupt_count(std::string_view proc_interrupts, std::string_view name) {
  auto words = [](std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t at = 0;
    while (true) {
      at = line.find_first_not_of(" \t", at);
      if (at == std::string_view::npos) return out;
      const auto end = std::min(line.find_first_of(" \t", at), line.size());
      out.push_back(line.substr(at, end - at));
      at = end;
    }
  };
  std::size_t cpus = 0;
  std::optional<std::uint64_t> total;
  bool header = true;
  while (!proc_interrupts.empty()) {
    const auto newline = std::min(proc_interrupts.find('\n'), proc_interrupts.size());
    const auto fields = words(proc_interrupts.substr(0, newline));
    proc_interrupts.remove_prefix(std::min(newline + 1, proc_interrupts.size()));
    if (header) {  // "CPU0 CPU1 ..."
      header = false;
      cpus = static_cast<std::size_t>(std::count_if(fields.begin(), fields.end(),
                                                    [](std::string_view f) { return f.starts_with("CPU"); }));
      continue;
    }
    // "N: count... chip hwirq-type name[, name]..." (NMI:, LOC: and the
    // like carry no names).
    if (fields.size() < cpus + 4 || !fields[0].ends_with(':') ||
        !std::isdigit(static_cast<unsigned char>(fields[0].front()))) {
      continue;
    }
    bool named = false;
    for (std::size_t i = 1 + cpus + 2; i < fields.size(); ++i) {
      std::string_view field = fields[i];
      if (field.ends_with(',')) field.remove_suffix(1);
      named = named || field == name;
    }
    if (!named) continue;
    std::uint64_t sum = 0;
    for (std::size_t i = 1; i <= cpus; ++i) {
      std::uint64_t count = 0;
      const auto [end, ec] = std::from_chars(fields[i].data(), fields[i].data() + fields[i].size(), count);
      if (ec != std::errc() || end != fields[i].data() + fields[i].size()) return std::nullopt;
      sum += count;
    }
    total = total.value_or(0) + sum;
  }
  return total;
}

}  // namespace vfiolab
