// The LAVA console's lines (lab/runner/lava_console.h): KTAP result lines
// as LAVA test cases, and programs told in plan order whatever order they
// finish in. A file stands for the console; the kernel log is not relayed.
#include "lava_console.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace vfiolab::lab {
namespace {

TEST(LavaCase, PassFailAndSkipWithItsReason) {
  auto pass = lava_case("ok 3 vfio_type1_iommu.anonymous.dma_map_unmap");
  ASSERT_TRUE(pass);
  EXPECT_EQ(pass->id, "vfio_type1_iommu.anonymous.dma_map_unmap");
  EXPECT_EQ(pass->result, "pass");
  auto fail = lava_case("not ok 4 iommufd.reset # TIMEOUT");
  ASSERT_TRUE(fail);
  EXPECT_EQ(fail->id, "iommufd.reset");
  EXPECT_EQ(fail->result, "fail");
  auto skip = lava_case("ok 5 iommufd.huge # SKIP no 1 GiB pages (hugepages-1G is empty)");
  ASSERT_TRUE(skip);
  EXPECT_EQ(skip->result, "skip");
  EXPECT_EQ(skip->reason, "no 1 GiB pages (hugepages-1G is empty)");
  // kselftest's TAP 13 says "# skip" in lower case.
  EXPECT_EQ(lava_case("ok 1 global.open # skip no device")->result, "skip");
}

TEST(LavaCase, NamesWithSpacesAndLinesThatAreNoResult) {
  EXPECT_EQ(lava_case("ok 2 two words")->id, "two_words");
  EXPECT_EQ(lava_case("ok 7")->id, "7");
  EXPECT_FALSE(lava_case("# ok 1 a comment"));
  EXPECT_FALSE(lava_case("1..4"));
  EXPECT_FALSE(lava_case("okay 1 x"));
  EXPECT_FALSE(lava_case("ok x"));
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(LavaConsole, ProgramsInPlanOrderAndKtapAsItComes) {
  char path[] = "/tmp/vfiolab-lava-console-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    LavaConsole console(path, {"first:edu", "second"}, /*relay_kernel_log=*/false);
    ASSERT_TRUE(console.is_open());
    console.ktap("KTAP version 1\n1..2\n");
    // The second finishes first: its KTAP goes out, its LAVA lines wait.
    console.ktap("    ok 1 a\nok 1 second\n");
    console.finished(1, {"    ok 1 a"}, "ok 1 second");
    EXPECT_EQ(read(path).find("vfiolab-lava:"), std::string::npos);
    console.finished(0, {"    KTAP version 1", "    1..2", "    not ok 1 x.y", "    ok 2 x.z # SKIP why",
                         "        ok 1 nested, not the program's own"},
                     "not ok 2 first:edu");
  }
  EXPECT_EQ(read(path),
            "vfiolab-ktap: KTAP version 1\n"
            "vfiolab-ktap: 1..2\n"
            "vfiolab-ktap:     ok 1 a\n"
            "vfiolab-ktap: ok 1 second\n"
            "vfiolab-lava: begin first:edu\n"
            "vfiolab-lava: case x.y fail\n"
            "vfiolab-lava: case x.z skip why\n"
            "vfiolab-lava: case program fail\n"
            "vfiolab-lava: end first:edu fail\n"
            "vfiolab-lava: begin second\n"
            "vfiolab-lava: case a pass\n"
            "vfiolab-lava: case program pass\n"
            "vfiolab-lava: end second pass\n");
  ::unlink(path);
}

TEST(LavaConsole, ASkippedProgramKeepsItsReason) {
  char path[] = "/tmp/vfiolab-lava-console-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    LavaConsole console(path, {"kselftest:irq_test"}, /*relay_kernel_log=*/false);
    console.finished(0, {"    # kselftest:irq_test: not run: no KVM"}, "ok 1 kselftest:irq_test # SKIP no KVM");
  }
  EXPECT_NE(read(path).find("vfiolab-lava: case program skip no KVM\n"), std::string::npos);
  EXPECT_NE(read(path).find("vfiolab-lava: end kselftest:irq_test skip\n"), std::string::npos);
  ::unlink(path);
}

}  // namespace
}  // namespace vfiolab::lab
