// The lab's plan: which programs the guest runs, and which of them may run
// at the same time.
//
// A plan line is "NAME [+RESOURCE]... COMMAND": COMMAND is run by sh -c in
// the guest. An entry holds the IOMMU groups of the devices its command
// names (by a literal BDF or by a variable such as $EDU whose value is one),
// plus its +RESOURCE words (for instance +hugepages-1g, one pool page that
// two programs must not share). Two special words: +alone (nothing else runs
// beside it, for performance programs) and +nodevice (the command names no
// device and needs none). A command that names no device and does not say
// +nodevice runs alone, since it may use one through VFIO_SELFTESTS_BDF.
//
// +needs:VAR is a condition, not a resource: the entry runs only when the
// variable VAR is set and not empty (a device this machine may lack, such
// as $IGB). Otherwise the runner reports it skipped, with the reason the
// lab left in $LAB_ABSENT_VAR.
//
// Entries keep the plan's order on each resource: an entry starts once no
// earlier entry that shares a resource with it is unfinished, and while
// fewer than `jobs` entries run.
#pragma once

#include "vfiolab/error.h"

#include <cstddef>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::lab {

struct PlanEntry {
  std::string name;
  std::vector<std::string> resources;  // the +RESOURCE words, without '+'
  std::vector<std::string> needs;      // the +needs:VAR variables
  std::string command;
  int line = 0;
};

// Lines that are empty or start with '#' are ignored. The error names the
// line that is wrong (no command, a name used twice).
Result<std::vector<PlanEntry>> parse_plan(std::string_view text);

// The BDFs a command names: literal ones, and the values of the variables it
// expands ($NAME or ${NAME...}) that are BDFs. `lookup` gives a variable's
// value. Each BDF once, in the order of first appearance, in the long form.
std::vector<std::string> named_devices(std::string_view command,
                                       const std::function<std::optional<std::string>(std::string_view)>& lookup);

inline constexpr std::string_view kAlone = "alone";
inline constexpr std::string_view kNoDevice = "nodevice";
inline constexpr std::string_view kNeeds = "needs:";

// Why an entry cannot run here: the first of its +needs:VAR variables that
// is unset or empty, with the reason `lookup` finds in LAB_ABSENT_VAR (or a
// plain one). Empty when it can run.
std::optional<std::string> unmet_need(const PlanEntry& entry,
                                      const std::function<std::optional<std::string>(std::string_view)>& lookup);

// What an entry holds while it runs: its +RESOURCE words and one
// "group:N" (or "device:BDF" for a device without a group) per device.
// `group_of` gives a device's IOMMU group.
std::set<std::string> entry_resources(const PlanEntry& entry, const std::vector<std::string>& devices,
                                      const std::function<std::optional<int>(const std::string&)>& group_of);

// Which entries may start now; see the file comment for the rules.
class Scheduler {
 public:
  Scheduler(std::vector<std::set<std::string>> resources, std::size_t jobs);

  // Entries that may start now, in plan order, at most as many as there are
  // free job slots. The caller starts them and says so with started().
  std::vector<std::size_t> ready() const;
  void started(std::size_t entry);
  void finished(std::size_t entry);
  bool done() const;
  std::size_t running() const { return running_; }

 private:
  enum class State { waiting, running, finished };
  bool conflicts(std::size_t a, std::size_t b) const;

  std::vector<std::set<std::string>> resources_;
  std::vector<State> state_;
  std::size_t jobs_;
  std::size_t running_ = 0;
};

// The reason to give for a program that exited as a whole SKIP (4): none
// when it printed KTAP of its own (its plan line says why); otherwise its
// last line of output, as a kselftest prints one before any KTAP ("No
// driver found for device ..."), or ksft_exit_skip()'s "1..0 # SKIP REASON"
// without the "1..0 # SKIP".
std::string whole_skip_reason(const std::vector<std::string>& output);

}  // namespace vfiolab::lab
