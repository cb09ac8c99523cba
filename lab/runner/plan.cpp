#include "plan.h"

#include "vfiolab/sysfs.h"
#include "vfiolab/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace vfiolab::lab {
namespace {

// A plan line that cannot be run: no syscall failed, so no errno.
std::unexpected<Error> bad(std::string what) { return std::unexpected(make_error(0, "parse plan", std::move(what))); }

using text::next_word;
using text::trim;

bool is_name_char(char c, bool first) {
  return c == '_' || std::isalpha(static_cast<unsigned char>(c)) || (!first && std::isdigit(static_cast<unsigned char>(c)));
}

bool is_hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// "SSSS:BB:DD.F" starting at `at`, not part of a longer run of hex digits.
std::optional<std::string> literal_bdf_at(std::string_view text, std::size_t at) {
  constexpr std::string_view kShape = "hhhh:hh:hh.h";
  if (at + kShape.size() > text.size()) return std::nullopt;
  if (at > 0 && (is_hex(text[at - 1]) || text[at - 1] == ':')) return std::nullopt;
  for (std::size_t i = 0; i < kShape.size(); ++i) {
    char c = text[at + i];
    if (kShape[i] == 'h' ? !is_hex(c) : c != kShape[i]) return std::nullopt;
  }
  auto bdf = parse_bdf(text.substr(at, kShape.size()));
  if (!bdf) return std::nullopt;
  return bdf->str();
}

}  // namespace

Result<std::vector<PlanEntry>> parse_plan(std::string_view text) {
  std::vector<PlanEntry> entries;
  int number = 0;
  while (!text.empty()) {
    auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++number;
    std::string_view rest = trim(line);
    if (rest.empty() || rest.front() == '#') continue;

    PlanEntry entry;
    entry.line = number;
    entry.name = std::string(next_word(rest));
    for (;;) {
      std::string_view before = rest;
      std::string_view word = next_word(rest);
      if (word.size() < 2 || word.front() != '+') {
        rest = before;
        break;
      }
      word.remove_prefix(1);
      if (word.starts_with(kNeeds)) {
        word.remove_prefix(kNeeds.size());
        bool valid = !word.empty();
        for (std::size_t i = 0; i < word.size() && valid; ++i) valid = is_name_char(word[i], i == 0);
        if (!valid) {
          return bad(fmt::format("plan line {}: '+{}{}' does not name a variable", number, kNeeds, word));
        }
        entry.needs.emplace_back(word);
      } else {
        entry.resources.emplace_back(word);
      }
    }
    rest = trim(rest);
    if (rest.empty()) return bad(fmt::format("plan line {}: '{}' has no command", number, entry.name));
    entry.command = std::string(rest);
    if (std::any_of(entries.begin(), entries.end(), [&](const PlanEntry& e) { return e.name == entry.name; })) {
      return bad(fmt::format("plan line {}: the name '{}' is used twice", number, entry.name));
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::vector<std::string> named_devices(std::string_view command,
                                       const std::function<std::optional<std::string>(std::string_view)>& lookup) {
  std::vector<std::string> devices;
  auto add = [&](const std::string& bdf) {
    if (std::find(devices.begin(), devices.end(), bdf) == devices.end()) devices.push_back(bdf);
  };
  for (std::size_t at = 0; at < command.size(); ++at) {
    if (auto bdf = literal_bdf_at(command, at)) {
      add(*bdf);
      at += 11;
      continue;
    }
    if (command[at] != '$') continue;
    std::size_t start = at + 1;
    if (start < command.size() && command[start] == '{') ++start;
    std::size_t end = start;
    while (end < command.size() && is_name_char(command[end], end == start)) ++end;
    if (end == start) continue;
    if (auto value = lookup(command.substr(start, end - start))) {
      if (auto bdf = parse_bdf(*value)) add(bdf->str());
    }
    at = end - 1;
  }
  return devices;
}

std::optional<std::string> unmet_need(const PlanEntry& entry,
                                      const std::function<std::optional<std::string>(std::string_view)>& lookup) {
  for (const auto& name : entry.needs) {
    auto value = lookup(name);
    if (value && !value->empty()) continue;
    auto why = lookup("LAB_ABSENT_" + name);
    return fmt::format("${} is empty: {}", name, why && !why->empty() ? *why : "this machine does not provide it");
  }
  return std::nullopt;
}

std::set<std::string> entry_resources(const PlanEntry& entry, const std::vector<std::string>& devices,
                                      const std::function<std::optional<int>(const std::string&)>& group_of) {
  std::set<std::string> held(entry.resources.begin(), entry.resources.end());
  bool no_device = held.erase(std::string(kNoDevice)) > 0;
  for (const auto& bdf : devices) {
    auto group = group_of(bdf);
    held.insert(group ? fmt::format("group:{}", *group) : "device:" + bdf);
  }
  if (devices.empty() && !no_device) held.insert(std::string(kAlone));
  return held;
}

Scheduler::Scheduler(std::vector<std::set<std::string>> resources, std::size_t jobs)
    : resources_(std::move(resources)), state_(resources_.size(), State::waiting), jobs_(std::max<std::size_t>(jobs, 1)) {}

bool Scheduler::conflicts(std::size_t a, std::size_t b) const {
  const auto& x = resources_[a];
  const auto& y = resources_[b];
  const std::string alone(kAlone);
  if (x.contains(alone) || y.contains(alone)) return true;
  return std::any_of(x.begin(), x.end(), [&](const std::string& r) { return y.contains(r); });
}

std::vector<std::size_t> Scheduler::ready() const {
  std::vector<std::size_t> ready;
  std::size_t slots = jobs_ - std::min(jobs_, running_);
  for (std::size_t j = 0; j < state_.size() && ready.size() < slots; ++j) {
    if (state_[j] != State::waiting) continue;
    bool blocked = false;
    for (std::size_t i = 0; i < j && !blocked; ++i) {
      blocked = state_[i] != State::finished && conflicts(i, j);
    }
    if (!blocked) ready.push_back(j);
  }
  return ready;
}

void Scheduler::started(std::size_t entry) {
  state_.at(entry) = State::running;
  ++running_;
}

void Scheduler::finished(std::size_t entry) {
  if (state_.at(entry) == State::running) --running_;
  state_.at(entry) = State::finished;
}

bool Scheduler::done() const {
  return std::all_of(state_.begin(), state_.end(), [](State s) { return s == State::finished; });
}

std::string whole_skip_reason(const std::vector<std::string>& output) {
  for (const auto& line : output) {
    const std::string_view text = vfiolab::text::trim(line);
    if (text.starts_with("KTAP version") || text.starts_with("TAP version")) return {};
  }
  for (auto line = output.rbegin(); line != output.rend(); ++line) {
    std::string_view text = vfiolab::text::trim(*line);
    if (text.empty()) continue;
    // ksft_exit_skip() before any plan: "1..0 # SKIP REASON".
    constexpr std::string_view kEmptyPlanSkip = "1..0 # SKIP";
    if (text.starts_with(kEmptyPlanSkip)) text = vfiolab::text::trim(text.substr(kEmptyPlanSkip.size()));
    return std::string(text);
  }
  return {};
}

}  // namespace vfiolab::lab
