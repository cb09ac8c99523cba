// A lab run held against what is expected of its lane: which tests are known
// to fail (with the evidence) and which SKIP (with their reasons).
//
// An expectations file has one entry a line; '#' starts a comment line:
//
//   fail  ID  EVIDENCE   a known failure: the run passes while ID fails
//   flaky ID  EVIDENCE   fails some runs and not others: either is accepted
//   skip  ID  REASON     an expected SKIP, with the reason the test prints
//   report PROGRAM/WORD EVIDENCE
//                        a known kernel report (kernel_log.h: WARNING, KASAN,
//                        kmemleak, ...) during PROGRAM, with WORD in one of
//                        its lines (a function or file:line): the run passes
//                        with every report of PROGRAM that has WORD in it
//
// ID is the test's path in the run's KTAP, program and test names joined by
// '/' (vfio_pci_driver_test:edu/vfio_pci_driver_test.iommufd.memcpy_success).
// A program that failed with no failing test of its own (a crash, an exit
// status, a timeout) is its own ID.
//
// Held against a run, every difference is a problem that fails the lane: a
// failure not listed, a listed failure that passed or did not run (stale), a
// SKIP not listed, a listed SKIP that did not skip or skipped for another
// reason.
//
// A run of a part of the lane's plan (the fast tier, lab/quick.plan, or
// entries named on the command line) is held against the part of the file
// that ran: an entry whose test did not run is no difference. The fast tier
// may split one suite entry into several, named after it with a suffix
// (vfio_pci_driver_test:edu:blocked): a test of such an entry that the file
// does not name is held against the same test of the entry it was split
// from (vfio_pci_driver_test:edu/...).
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/kernel_log.h"
#include "vfiolab/ktap.h"

#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::lab {

// One test of a run, at the bottom of the KTAP tree.
struct Leaf {
  std::string id;
  ktap::Outcome outcome = ktap::Outcome::pass;
  std::string reason;  // a SKIP's reason; "(no reason given)" when it gave none
};

// Every test of the run, in document order. Each ID is one word that an
// expectations line can name: white space and '/' in a test's name become
// '_', a test without a name is "(unnamed)", and a name that repeats under
// one parent gets "#2", "#3"... so each ID is unique.
std::vector<Leaf> leaves(const ktap::Document& document);

struct Expectation {
  enum class Kind { fail, flaky, skip, report };
  Kind kind = Kind::fail;
  std::string id;
  std::string text;  // the evidence, or the SKIP's reason
  int line = 0;
};

// The error names the line and what is wrong with it.
Result<std::vector<Expectation>> parse_expectations(std::string_view text);

struct Verdict {
  int passed = 0;
  int skipped = 0;                          // expected SKIPs with their reasons
  std::vector<std::string> known_failures;  // listed failures (fail or flaky) that failed
  std::vector<std::string> problems;        // each one fails the lane
};

enum class Scope {
  whole_plan,  // everything listed must have run
  part,        // only what ran is held (see above)
};

Verdict check(const std::vector<Leaf>& run, const std::vector<Expectation>& expected,
              Scope scope = Scope::whole_plan);

// An expectations file for what a run did: its SKIPs as entries, its
// failures as comments for a person to confirm with evidence.
std::string draft_expectations(const std::vector<Leaf>& run);

// The run's kernel reports held against the "report" entries: each report
// no entry matches is a problem, as is (for the whole plan) an entry that
// matched none.
struct ReportVerdict {
  std::vector<std::string> known;     // the reports that were listed, described
  std::vector<std::string> problems;  // each one fails the lane
};
ReportVerdict check_reports(const std::vector<kernel_log::Finding>& findings,
                            const std::vector<Expectation>& expected, Scope scope);

}  // namespace vfiolab::lab
