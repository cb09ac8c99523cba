#include "vfiolab/kernel_log.h"

#include <gtest/gtest.h>

namespace vfiolab::kernel_log {
namespace {

TEST(KernelLogMessage, StripsTimestampAndLevel) {
  EXPECT_EQ(message_of("[    1.234567] WARNING: CPU: 0"), "WARNING: CPU: 0");
  EXPECT_EQ(message_of("<4>[   12.000001] BUG: x"), "BUG: x");
  EXPECT_EQ(message_of("[    1.000000] [    T1] Oops: y"), "Oops: y");
  EXPECT_EQ(message_of("plain line\r"), "plain line");
  EXPECT_EQ(message_of("[unterminated"), "[unterminated");
}

TEST(KernelLogClassify, KnownReports) {
  EXPECT_EQ(classify("WARNING: CPU: 1 PID: 70 at drivers/misc/lkdtm/bugs.c:100 lkdtm_WARNING+0x1/0x2"),
            Kind::warning);
  EXPECT_EQ(classify("BUG: kernel NULL pointer dereference, address: 0000000000000000"), Kind::bug);
  EXPECT_EQ(classify("kernel BUG at mm/slub.c:100!"), Kind::bug);
  EXPECT_EQ(classify("Oops: general protection fault, probably for non-canonical address"), Kind::oops);
  EXPECT_EQ(classify("general protection fault: 0000 [#1] SMP"), Kind::oops);
  EXPECT_EQ(classify("BUG: KASAN: slab-out-of-bounds in foo+0x10/0x20"), Kind::kasan);
  EXPECT_EQ(classify("UBSAN: shift-out-of-bounds in drivers/x.c:1:2"), Kind::ubsan);
  EXPECT_EQ(classify("WARNING: possible circular locking dependency detected"), Kind::lockdep);
  EXPECT_EQ(classify("WARNING: suspicious RCU usage"), Kind::lockdep);
  EXPECT_EQ(classify("Kernel panic - not syncing: Fatal exception"), Kind::panic);
  EXPECT_EQ(classify("INFO: task kworker/0:1:12 blocked for more than 120 seconds."), Kind::hung_task);
  EXPECT_EQ(classify("rcu: INFO: rcu_preempt self-detected stall on CPU"), Kind::rcu_stall);
}

TEST(KernelLogClassify, OrdinaryLinesAreNotReports) {
  EXPECT_FALSE(classify("DMAR: Intel(R) Virtualization Technology for Directed I/O"));
  EXPECT_FALSE(classify("vfio-pci 0000:00:04.0: enabling device (0000 -> 0002)"));
  EXPECT_FALSE(classify("lab: 0000:00:04.0 driver=vfio-pci iommu_group=3"));
  EXPECT_FALSE(classify("INFO: task list printed"));  // no "blocked for more than"
  EXPECT_FALSE(classify("printing WARNING: inside a line"));
  EXPECT_FALSE(classify(""));
}

TEST(KernelLogMarker, BeginAndEnd) {
  auto begin = parse_marker("vfiolab: begin 3 vfio_dma_mapping_test");
  ASSERT_TRUE(begin);
  EXPECT_TRUE(begin->begin);
  EXPECT_EQ(begin->number, 3);
  EXPECT_EQ(begin->program, "vfio_dma_mapping_test");
  auto end = parse_marker("vfiolab: end 3 vfio_dma_mapping_test exit=0");
  ASSERT_TRUE(end);
  EXPECT_FALSE(end->begin);
  EXPECT_EQ(end->program, "vfio_dma_mapping_test");
  EXPECT_FALSE(parse_marker("vfiolab: begin x name"));
  EXPECT_FALSE(parse_marker("vfiolab: begin 3"));
  EXPECT_FALSE(parse_marker("vfiolab: plan start"));
}

constexpr const char* kWarningLog = R"([    0.500000] Run /init as init process
[    2.000000] vfiolab: begin 1 lkdtm_warning
[    2.100000] lkdtm: Performing direct entry WARNING
[    2.100001] ------------[ cut here ]------------
[    2.100002] WARNING: CPU: 1 PID: 70 at drivers/misc/lkdtm/bugs.c:100 lkdtm_WARNING+0x1/0x2
[    2.100003] CPU: 1 UID: 0 PID: 70 Comm: sh Not tainted 6.12.0 #1
[    2.100004] Call Trace:
[    2.100005]  <TASK>
[    2.100006]  direct_entry+0x1/0x2
[    2.100007]  </TASK>
[    2.100008] ---[ end trace 0000000000000000 ]---
[    2.200000] vfiolab: end 1 lkdtm_warning exit=0
[    2.300000] reboot: Power down
)";

TEST(KernelLogScan, WarningWithItsTraceAttributedToTheProgram) {
  auto findings = scan(kWarningLog);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, Kind::warning);
  EXPECT_EQ(findings[0].program, "lkdtm_warning");
  EXPECT_EQ(findings[0].line, 5);
  ASSERT_EQ(findings[0].lines.size(), 7u);
  EXPECT_NE(findings[0].lines.back().find("end trace"), std::string::npos);
}

TEST(KernelLogScan, CleanLogHasNoFindings) {
  EXPECT_TRUE(scan("[    0.1] Linux version 6.12\n[    0.2] DMAR: IOMMU enabled\n").empty());
  EXPECT_TRUE(scan("").empty());
}

TEST(KernelLogScan, ReportWithoutEndTraceClosesAfterItsStack) {
  auto findings = scan(
      "[ 1.0] BUG: sleeping function called from invalid context at x.c:1\n"
      "[ 1.0] Call Trace:\n"
      "[ 1.0]  <TASK>\n"
      "[ 1.0]  f+0x1/0x2\n"
      "[ 1.0]  </TASK>\n"
      "[ 1.1] ordinary line\n"
      "[ 1.2] WARNING: CPU: 0 PID: 1 at y.c:2 g\n");
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].kind, Kind::bug);
  EXPECT_EQ(findings[0].lines.size(), 5u);
  EXPECT_EQ(findings[1].kind, Kind::warning);
  EXPECT_EQ(findings[1].program, "");
}

TEST(KernelLogScan, ReportCutOffByAMarkerStillCounts) {
  auto findings = scan(
      "vfiolab: begin 1 a\n"
      "WARNING: CPU: 0 PID: 1 at y.c:2 g\n"
      "vfiolab: end 1 a exit=139\n"
      "vfiolab: begin 2 b\n");
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].program, "a");
}

TEST(KernelLogScan, ReportDuringOverlappingProgramsNamesEach) {
  auto findings = scan(
      "vfiolab: begin 1 a\n"
      "vfiolab: begin 2 b\n"
      "WARNING: CPU: 0 PID: 1 at y.c:2 g\n"
      "vfiolab: end 1 a exit=0\n"
      "WARNING: CPU: 1 PID: 2 at y.c:3 h\n"
      "vfiolab: end 2 b exit=0\n"
      "WARNING: CPU: 1 PID: 3 at y.c:4 i\n");
  ASSERT_EQ(findings.size(), 3u);
  EXPECT_EQ(findings[0].program, "a or b");
  EXPECT_EQ(findings[1].program, "b");
  EXPECT_EQ(findings[2].program, "");
}

TEST(KernelLogScan, RunawayReportIsBounded) {
  std::string log = "Oops: 0000 [#1] SMP\n";
  for (int i = 0; i < 1000; ++i) log += "garbage line\n";
  auto findings = scan(log);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_LE(findings[0].lines.size(), 80u);
}

// The lab's init copies a kmemleak scan to the console after the plan:
// each object is a report of its own, belonging to the programs its comm
// starts (after every program ended); a kernel thread's leak to none.
TEST(KernelLogScan, KmemleakObjectsEachAReportOfTheProgramThatAllocated) {
  auto findings = scan(
      "[ 1.0] vfiolab: begin 1 vfio_fail_nth_test:map\n"
      "[ 1.1] vfiolab: begin 2 vfio_pci_device_test:edu\n"
      "[ 2.0] vfiolab: end 1 vfio_fail_nth_test:map exit=0\n"
      "[ 2.1] vfiolab: end 2 vfio_pci_device_test:edu exit=0\n"
      "kmemleak: unreferenced object 0xffff888100a2e000 (size 64):\n"
      "kmemleak:   comm \"vfio_fail_nth_t\", pid 123, jiffies 4294937296\n"
      "kmemleak:   backtrace (crc 0):\n"
      "kmemleak:     [<ffffffff81234567>] kmalloc_trace+0x1/0x2\n"
      "kmemleak: unreferenced object 0xffff888100a2f000 (size 32):\n"
      "kmemleak:   comm \"kworker/0:1\", pid 7, jiffies 4294937300\n"
      "lab: kmemleak: 2 leaks\n");
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].kind, Kind::kmemleak);
  EXPECT_EQ(findings[0].program, "vfio_fail_nth_test:map");
  EXPECT_EQ(findings[0].lines.size(), 4u);
  EXPECT_EQ(findings[1].kind, Kind::kmemleak);
  EXPECT_EQ(findings[1].program, "");
  EXPECT_EQ(findings[1].lines.size(), 2u);
}

}  // namespace
}  // namespace vfiolab::kernel_log

