#include "vfiolab/iommu_page_table.h"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vfiolab {
namespace {

constexpr std::uint64_t kPageShift = 12;

std::optional<std::uint64_t> parse_hex(std::string_view word) {
  if (!word.starts_with("0x")) return std::nullopt;
  word.remove_prefix(2);
  std::uint64_t value = 0;
  auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), value, 16);
  if (error != std::errc() || end != word.data() + word.size()) return std::nullopt;
  return value;
}

}  // namespace

std::vector<IommuLeaf> parse_intel_translation_struct(std::string_view text) {
  std::vector<IommuLeaf> leaves;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    std::string_view line = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    start = end == std::string_view::npos ? text.size() : end + 1;
    auto bar = line.find('|');
    if (bar == std::string_view::npos) continue;
    std::string_view pfn_text = line.substr(0, bar);
    while (!pfn_text.empty() && (pfn_text.back() == ' ' || pfn_text.back() == '\t')) pfn_text.remove_suffix(1);
    auto pfn = parse_hex(pfn_text);
    if (!pfn || *pfn > (UINT64_MAX >> kPageShift)) continue;

    int entries = 0;
    bool well_formed = true;
    std::string_view rest = line.substr(bar + 1);
    while (!rest.empty()) {
      auto skip = rest.find_first_not_of(" \t");
      if (skip == std::string_view::npos) break;
      rest.remove_prefix(skip);
      auto word_end = rest.find_first_of(" \t");
      if (!parse_hex(rest.substr(0, word_end))) well_formed = false;
      ++entries;
      rest = word_end == std::string_view::npos ? std::string_view() : rest.substr(word_end);
    }
    std::uint64_t size = 0;
    if (entries == 3) size = 1ull << 30;
    if (entries == 4) size = 2ull << 20;
    if (entries == 5) size = 4096;
    if (well_formed && size != 0) leaves.push_back({*pfn << kPageShift, size});
  }
  return leaves;
}

Result<IommuLeaf> iommu_leaf_for(const Bdf& bdf, std::uint64_t iova) {
  std::filesystem::path path =
      std::filesystem::path("/sys/kernel/debug/iommu/intel") / bdf.str() / "domain_translation_struct";
  std::ifstream in(path);
  if (!in) {
    return std::unexpected(unsupported_error(
        ENOENT, "read IOMMU page table",
        fmt::format("no {} (not an Intel IOMMU, or no CONFIG_INTEL_IOMMU_DEBUGFS, or debugfs not mounted)",
                    path.string())));
  }
  std::ostringstream text;
  text << in.rdbuf();
  for (const IommuLeaf& leaf : parse_intel_translation_struct(text.str())) {
    if (iova >= leaf.iova && iova - leaf.iova < leaf.page_size) return leaf;
  }
  return std::unexpected(make_error(ENOENT, "IOMMU page table", fmt::format("{}: no entry maps iova {:#x}", bdf.str(), iova)));
}

}  // namespace vfiolab
