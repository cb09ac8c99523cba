#include "vfiolab/iommu_fault.h"

#include <fcntl.h>
#include <poll.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

namespace {

// What a message cost dmar_fault's rate limit: its status line stands for
// itself and the record loop's last, empty iteration; a fault record for
// itself; anything else nothing.
int intel_fault_log_cost(std::string_view message) {
  if (message.starts_with("DMAR: DRHD: handling fault status reg")) return 2;
  if (message.starts_with("DMAR: [") && parse_iommu_fault(message).has_value()) return 1;
  return 0;
}

}  // namespace

std::optional<std::uint64_t> intel_fault_log_full_until(const std::vector<LogRecord>& records, std::uint64_t now_usec,
                                                        int needed) {
  std::optional<std::uint64_t> begin;
  int printed = 0;
  for (const auto& record : records) {
    const int cost = intel_fault_log_cost(record.message);
    if (cost == 0) continue;
    if (!begin || record.usec >= *begin + kIntelFaultLogWindowUsec) {
      begin = record.usec;
      printed = 0;
    }
    printed = std::min(printed + cost, kIntelFaultLogBurst);
  }
  if (!begin || now_usec >= *begin + kIntelFaultLogWindowUsec) return std::nullopt;
  if (printed + needed <= kIntelFaultLogBurst) return std::nullopt;
  return *begin + kIntelFaultLogWindowUsec;
}

}  // namespace vfiolab
