// One run's KTAP from the KTAP of the machines it was split over (lab/run
// --vms): each machine's guest wrote a document of its own, numbering its
// programs from 1. The merged document has the whole plan's count on its
// plan line and every program's block, renumbered, in the plan's order.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::lab {

// `plan_names`: the plan's entries, in order (the first word of each plan
// line). `documents`: each machine's KTAP text. A program's block is the
// lines up to and with its top-level result line ("ok N NAME" or "not ok N
// NAME", unindented); lines after a document's last result (a machine that
// stopped inside a program) are left out, and a program the plan does not
// name goes after the plan's. The plan line counts the whole plan, so
// programs that never reported show as missing.
std::string merge_ktap(const std::vector<std::string>& plan_names, const std::vector<std::string>& documents);

}  // namespace vfiolab::lab
