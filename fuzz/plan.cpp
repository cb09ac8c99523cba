// The lab's plan (lab::parse_plan), the devices its commands name and the
// schedule made from it.
#include "fuzz.h"
#include "plan.h"
#include "vfiolab/sysfs.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>

namespace {

using namespace vfiolab;
using fuzz::require;

// A variable's value for named_devices: a BDF for some names (long or short
// form), other text for others, unset for the rest.
std::optional<std::string> lookup(std::string_view name) {
  const unsigned char key = static_cast<unsigned char>(name.front());
  switch (key % 4) {
    case 0: return fmt::format("0000:{:02x}:{:02x}.{}", key, key % 32, key % 8);
    case 1: return fmt::format("{:02x}:03.0", key);
    case 2: return std::string(name);
  }
  return std::nullopt;
}

std::optional<int> group_of(const std::string& bdf) {
  const auto parsed = parse_bdf(bdf);
  require(parsed.has_value(), "a named device is a BDF");
  if (parsed->bus % 3 == 0) return std::nullopt;
  return parsed->bus % 5;
}

std::string written(const lab::PlanEntry& entry) {
  std::string line = entry.name;
  for (const auto& resource : entry.resources) line += " +" + resource;
  for (const auto& need : entry.needs) line += fmt::format(" +{}{}", lab::kNeeds, need);
  return line + " " + entry.command;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  const auto plan = lab::parse_plan(text);
  if (!plan) return 0;

  int last_line = 0;
  std::string again;
  std::vector<std::set<std::string>> resources;
  for (const auto& entry : *plan) {
    require(entry.line > last_line && entry.line <= lines, "entries keep the plan's order of lines");
    last_line = entry.line;
    require(!entry.name.empty() && !entry.command.empty(), "an entry has a name and a command");
    require(std::count_if(plan->begin(), plan->end(), [&](const auto& e) { return e.name == entry.name; }) == 1,
            "names are unique");
    for (const auto& resource : entry.resources) require(!resource.empty(), "a resource is named");
    for (const auto& need : entry.needs) require(!need.empty(), "a need names a variable");

    // Every device named is a BDF in the long form, named once.
    const auto devices = lab::named_devices(entry.command, lookup);
    for (const auto& bdf : devices) {
      const auto parsed = parse_bdf(bdf);
      require(parsed && parsed->str() == bdf, "a named device is a BDF in the long form");
      require(std::count(devices.begin(), devices.end(), bdf) == 1, "each device is named once");
    }
    resources.push_back(lab::entry_resources(entry, devices, group_of));
    again += written(entry) + "\n";
  }

  // The plan written out again parses to the same entries.
  const auto reparsed = lab::parse_plan(again);
  require(reparsed && reparsed->size() == plan->size(), "a plan written out again parses");
  for (std::size_t i = 0; i < plan->size(); ++i) {
    const auto& a = (*plan)[i];
    const auto& b = (*reparsed)[i];
    require(a.name == b.name && a.resources == b.resources && a.needs == b.needs && a.command == b.command,
            "a plan written out again reads the same");
  }

  // The schedule runs every entry, never more than `jobs` at once, never two
  // that share a resource (or one that must run alone beside another).
  const std::size_t jobs = 1 + size % 3;
  lab::Scheduler scheduler(resources, jobs);
  std::deque<std::size_t> running;
  auto clash = [&](std::size_t a, std::size_t b) {
    const auto& x = resources[a];
    const auto& y = resources[b];
    const std::string alone(lab::kAlone);
    if (x.contains(alone) || y.contains(alone)) return true;
    return std::any_of(x.begin(), x.end(), [&](const std::string& r) { return y.contains(r); });
  };
  for (std::size_t steps = 0; !scheduler.done(); ++steps) {
    require(steps <= plan->size(), "the schedule ends");
    for (std::size_t entry : scheduler.ready()) {
      for (std::size_t other : running) require(!clash(entry, other), "entries that clash never run together");
      scheduler.started(entry);
      running.push_back(entry);
    }
    require(running.size() <= jobs && scheduler.running() == running.size(), "at most `jobs` entries run");
    require(!running.empty(), "something runs until the schedule is done");
    scheduler.finished(running.front());
    running.pop_front();
  }
  return 0;
}
