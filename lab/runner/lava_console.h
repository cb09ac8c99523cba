// The plan's results on the console, for a LAVA job (lab/lava): LAVA reads
// only the console, so the KTAP document, the lines its monitors turn into
// test cases and the kernel log all go there, each line whole.
//
//   vfiolab-ktap: LINE                 the KTAP document lab/run gets on its
//                                      results port, line by line, as each
//                                      program finishes (ktap.txt)
//   vfiolab-lava: begin NAME           in plan order, once a program and all
//   vfiolab-lava: case ID RESULT [WHY]   before it finished: each of its
//   vfiolab-lava: end NAME RESULT        subtests and its own result
//                                      ("program"); RESULT is pass, fail or
//                                      skip, WHY a SKIP's reason
//
// The kernel writes its messages to the console a FIFO's worth at a time
// beside a process's writes, so one of them could land inside a result
// line. While the plan runs, the console's log level is lowered to 1
// (emergencies only: a panic still prints itself) and the messages it would
// have printed are relayed from /dev/kmsg instead, formatted as the kernel
// does ("[   12.345678] message"), each with one write(): the tty writes one
// write() whole (its write lock), so no line is cut into another.
#pragma once

#include "vfiolab/unique_fd.h"

#include <atomic>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace vfiolab::lab {

class LavaConsole {
 public:
  // Opens `path` (the guest's /dev/console) and, with `relay_kernel_log`,
  // starts relaying the kernel log; the plan's entry names are `names`, in
  // plan order.
  LavaConsole(const std::string& path, std::vector<std::string> names, bool relay_kernel_log);
  ~LavaConsole();
  LavaConsole(const LavaConsole&) = delete;
  LavaConsole& operator=(const LavaConsole&) = delete;

  bool is_open() const { return bool(fd_); }
  // Text of the KTAP document as the results port gets it.
  void ktap(std::string_view text);
  // Entry `entry` (its plan position) finished: the lines of its nested
  // KTAP block (indented) and its own result line ("ok 3 NAME # SKIP why").
  void finished(std::size_t entry, const std::vector<std::string>& block, std::string_view result_line);
  // Stops the relay after one last read, and puts the console's log level back.
  void close();

 private:
  struct Done {
    std::vector<std::string> block;
    std::string result_line;
  };
  void write_whole(std::string_view text);
  void relay_kernel_log();

  UniqueFd fd_;
  std::vector<std::string> names_;
  std::vector<std::optional<Done>> done_;
  std::size_t next_ = 0;  // the first entry not yet on the console
  std::mutex write_mutex_;
  std::optional<int> saved_level_;
  std::atomic<bool> stop_{false};
  std::thread relay_;
};

// One KTAP result line, "ok 3 name # SKIP why" (after its indentation), as
// a LAVA test case: its id (whitespace made '_'; the number where it has no
// name), pass/fail/skip as vfiolab's report counts it (ktap::outcome), and
// the SKIP's reason. Nothing for a line that is not a numbered result.
struct LavaCase {
  std::string id;
  std::string result;
  std::string reason;
};
std::optional<LavaCase> lava_case(std::string_view line);

}  // namespace vfiolab::lab
