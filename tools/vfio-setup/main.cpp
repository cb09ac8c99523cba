// vfio-setup: bind PCI devices to vfio-pci, run tests on them, and always put
// them back.
//
//   vfio-setup bind BDF...               record each device's driver, move it to vfio-pci
//   vfio-setup restore [BDF...]          put back what was recorded (all when none named)
//   vfio-setup run [-d BDF [--vfs N]]... [-s] [-- CMD [ARG...]]
//                                        bind (and give a PF N VFs), run CMD (or a shell with -s) with
//                                        VFIO_SELFTESTS_BDF set and the BDFs appended,
//                                        restore on exit, SIGINT, SIGTERM or SIGHUP
//   vfio-setup vfs PF COUNT              enable COUNT SR-IOV VFs on PF (0 removes them);
//                                        restore puts the PF's previous count back
//   vfio-setup list                      PCI devices, drivers, IOMMU groups, what is held
//   vfio-setup hugepages [--2m N] [--1g N] | --release
//                                        reserve HugeTLB pages / give back the previous counts
//
// What was recorded lives in $VFIO_SETUP_STATE_DIR (default
// /run/vfiolab/vfio-setup), one sealed file per device, written before the
// device is touched: `restore` works after this tool was killed, even with
// SIGKILL. Exit status: 0 done, 1 refused or failed, 2 usage; `run` exits
// with CMD's status.
//
// One file per command (bind.cpp, restore.cpp, run.cpp, vfs.cpp, list.cpp,
// hugepages.cpp); common.cpp has what they share and the state store.
#include "commands.h"
#include "common.h"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace {

using namespace vfiolab::setup;

int usage() {
  fmt::print(stderr,
             "usage: vfio-setup bind BDF...\n"
             "       vfio-setup restore [BDF...]\n"
             "       vfio-setup run [-d BDF [--vfs N]]... [-s] [-- CMD [ARG...]]\n"
             "       vfio-setup vfs PF COUNT\n"
             "       vfio-setup list\n"
             "       vfio-setup hugepages [--2m N] [--1g N] | --release\n"
             "state: $VFIO_SETUP_STATE_DIR (default /run/vfiolab/vfio-setup)\n");
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "bind") return command_bind(args);
  if (command == "restore") return command_restore(args);
  if (command == "run") return command_run(args);
  if (command == "vfs") return command_vfs(args);
  if (command == "list") return command_list();
  if (command == "hugepages") return command_hugepages(args);
  return usage();
}
