#include "merge.h"

#include "vfiolab/ktap.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <sstream>

namespace vfiolab::lab {
namespace {

struct Block {
  ktap::ResultLine result;
  std::vector<std::string> lines;  // before the result line
};

bool is_header(std::string_view line) {
  if (line.starts_with("KTAP version ") || line.starts_with("TAP version ")) return true;
  if (!line.starts_with("1..")) return false;
  line.remove_prefix(3);
  return !line.empty() && std::all_of(line.begin(), line.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

// The result line again, under its new number.
std::string renumbered(const ktap::ResultLine& result, std::size_t number) {
  std::string text = fmt::format("{}ok {} {}", result.ok ? "" : "not ", number, result.name);
  if (result.directive != ktap::Directive::none) {
    text += fmt::format(" # {}{}", ktap::directive_name(result.directive), result.reason.empty() ? "" : " " + result.reason);
  } else if (!result.reason.empty()) {
    text += " # " + result.reason;
  }
  return text;
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
      // A program's result is the unindented result line; nested ones are
      // its own tests.
      auto result = line.starts_with(" ") ? std::nullopt : ktap::parse_result_line(line);
      if (result) {
        blocks.push_back(Block{std::move(*result), std::move(pending)});
        pending.clear();
      } else {
        pending.push_back(line);
      }
    }
  }
  std::map<std::string, std::size_t> order;
  for (std::size_t i = 0; i < plan_names.size(); ++i) order.emplace(plan_names[i], i);
  std::stable_sort(blocks.begin(), blocks.end(), [&](const Block& a, const Block& b) {
    auto rank = [&](const Block& block) {
      auto at = order.find(block.result.name);
      return at == order.end() ? plan_names.size() : at->second;
    };
    return rank(a) < rank(b);
  });

  const auto strangers = std::count_if(blocks.begin(), blocks.end(), [&](const Block& block) { return !order.contains(block.result.name); });
  std::string text = fmt::format("KTAP version 1\n1..{}\n", plan_names.size() + static_cast<std::size_t>(strangers));
  std::size_t number = 0;
  for (const auto& block : blocks) {
    for (const auto& line : block.lines) text += line + "\n";
    text += renumbered(block.result, ++number) + "\n";
  }
  return text;
}

}  // namespace vfiolab::lab
