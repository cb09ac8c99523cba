#include "merge.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <sstream>

namespace vfiolab::lab {
namespace {

struct Block {
  std::string name;
  bool ok = false;
  std::string rest;                // after the name: " # SKIP why", ...
  std::vector<std::string> lines;  // before the result line
};

// "ok N NAME REST" or "not ok N NAME REST", unindented.
std::optional<Block> result_line(std::string_view line) {
  Block block;
  if (line.starts_with("ok ")) {
    block.ok = true;
    line.remove_prefix(3);
  } else if (line.starts_with("not ok ")) {
    line.remove_prefix(7);
  } else {
    return std::nullopt;
  }
  std::size_t digits = 0;
  while (digits < line.size() && std::isdigit(static_cast<unsigned char>(line[digits]))) ++digits;
  if (digits == 0) return std::nullopt;
  line.remove_prefix(digits);
  if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  const auto end = line.find_first_of(" #");
  block.name = std::string(line.substr(0, end));
  if (end != std::string_view::npos) block.rest = std::string(line.substr(end));
  return block;
}

bool is_header(std::string_view line) {
  if (line.starts_with("KTAP version ") || line.starts_with("TAP version ")) return true;
  if (!line.starts_with("1..")) return false;
  line.remove_prefix(3);
  return !line.empty() && std::all_of(line.begin(), line.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

std::string merge_ktap(const std::vector<std::string>& plan_names, const std::vector<std::string>& documents) {
  std::vector<Block> blocks;
  for (const auto& document : documents) {
    std::istringstream in(document);
    std::vector<std::string> pending;
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (is_header(line)) continue;
      if (auto block = result_line(line)) {
        block->lines = std::move(pending);
        pending.clear();
        blocks.push_back(std::move(*block));
      } else {
        pending.push_back(line);
      }
    }
  }
  std::map<std::string, std::size_t> order;
  for (std::size_t i = 0; i < plan_names.size(); ++i) order.emplace(plan_names[i], i);
  std::stable_sort(blocks.begin(), blocks.end(), [&](const Block& a, const Block& b) {
    auto rank = [&](const Block& block) {
      auto at = order.find(block.name);
      return at == order.end() ? plan_names.size() : at->second;
    };
    return rank(a) < rank(b);
  });

  const auto strangers = std::count_if(blocks.begin(), blocks.end(), [&](const Block& block) { return !order.contains(block.name); });
  std::string text = fmt::format("KTAP version 1\n1..{}\n", plan_names.size() + static_cast<std::size_t>(strangers));
  std::size_t number = 0;
  for (const auto& block : blocks) {
    for (const auto& line : block.lines) text += line + "\n";
    text += fmt::format("{}ok {} {}{}\n", block.ok ? "" : "not ", ++number, block.name, block.rest);
  }
  return text;
}

}  // namespace vfiolab::lab
