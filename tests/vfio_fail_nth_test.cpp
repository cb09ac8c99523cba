// vfio_fail_nth_test: the kernel's error paths, through a real device. Each
// sequence (open, map and unmap in each backing, region info, IRQ set-up,
// reset, IOAS replace) is run with the Nth kernel allocation of the calling
// thread made to fail (/proc/self/task/TID/fail-nth, with failslab and
// fail_page_alloc counting every allocation), for N = 1, 2, ... until the
// sequence runs through without reaching the fault. Each N must end with:
//  - the call in which the fault fired returning ENOMEM, or succeeding and
//    having done its work (the kernel fell back: checked by what the device
//    does, not by the return value);
//  - nothing left that the steps' results do not account for: no mapping
//    (an unmap of everything frees exactly what was mapped), no pinned or
//    locked page (VmPin and VmLck back where they were);
//  - no kernel report (WARNING, BUG, KASAN, lockdep, ...) in the log;
//  - the device usable again: a fresh open in the same mode, a driver, and
//    a copy checked byte for byte.
// A sweep stops at the first N that breaks one of these, naming N, the
// step and what was wrong; otherwise it prints how many fault points the
// sequence reached.
#include "device.h"
#include "driver_options.h"
#include "scope_exit.h"

#include "vfiolab/drivers.h"
#include "vfiolab/kernel_log.h"
#include "vfiolab/kmsg.h"
#include "vfiolab/sysfs.h"
#include "vfiolab/text.h"
#include "vfiolab/vf_token.h"

#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/pci_regs.h>
#include <malloc.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vfiolab {
namespace {

harness::ProgramOption verbose_faults(
    "--verbose-faults", harness::ProgramOption::Kind::flag, nullptr,
    "log a stack trace for every injected fault (failslab and fail_page_alloc verbose=2)");
harness::ProgramOption fault_limit("--max-faults", harness::ProgramOption::Kind::number, "N",
                                   "fail a sweep that reaches more than N fault points (default 4000)");
// A sweep reopens the device after every N: minutes under TCG.
harness::TimeoutOverride long_sweeps("vfio_fail_nth", std::chrono::seconds(1500));

constexpr const char* kDebugfs = "/sys/kernel/debug";
constexpr std::uint64_t kMapSize = 2u << 20;
constexpr std::uint64_t kCopySize = 4096;
constexpr long kDebugfsMagic = 0x64626720;

Result<void> write_text(const std::string& path, std::string_view text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return std::unexpected(Error{errno, "open", "", path});
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return std::unexpected(Error{errno, "write", "", fmt::format("{} <- {}", path, text)});
  return {};
}

// The fault-injection settings this program needs, and what it found there
// (put back when the test ends). By default failslab and fail_page_alloc
// leave out every allocation that may sleep, and fail_page_alloc every
// single page: nearly all of VFIO's. The settings are global, but with
// probability 0 nothing fails except through a task's fail-nth.
class FaultSettings {
 public:
  // The reason a test cannot run here, if any: the config symbol or the
  // missing mount or privilege.
  static std::optional<std::string> unavailable(pid_t tid) {
    if (!std::filesystem::exists(fmt::format("/proc/self/task/{}/fail-nth", tid)))
      return "kernel without CONFIG_FAULT_INJECTION (no /proc/self/task/TID/fail-nth)";
    if (::geteuid() != 0) return "needs root: it writes the fault-injection settings in debugfs";
    struct statfs fs{};
    if (::statfs(kDebugfs, &fs) != 0 || fs.f_type != kDebugfsMagic)
      return fmt::format("no debugfs at {} (mount -t debugfs none {}; kernel with CONFIG_DEBUG_FS)", kDebugfs,
                         kDebugfs);
    if (!std::filesystem::exists(fmt::format("{}/failslab", kDebugfs)))
      return "kernel without CONFIG_FAILSLAB or CONFIG_FAULT_INJECTION_DEBUG_FS (no failslab in debugfs)";
    if (!std::filesystem::exists(fmt::format("{}/fail_page_alloc", kDebugfs)))
      return "kernel without CONFIG_FAIL_PAGE_ALLOC (no fail_page_alloc in debugfs)";
    return std::nullopt;
  }

  // Every fault point (each fail* folder: failslab, fail_page_alloc, and
  // whatever else the kernel has, such as IOMMUFD_TEST's fail_iommufd)
  // logs its name when it fires (verbose 1; 2 adds the stack), so the
  // sweep knows which one it was. fail-nth counts at all of them.
  Result<void> apply(bool stacks) {
    std::vector<std::pair<std::string, std::string>> wanted = {
        {"failslab/ignore-gfp-wait", "N"},
        {"fail_page_alloc/ignore-gfp-wait", "N"},
        {"fail_page_alloc/ignore-gfp-highmem", "N"},
        {"fail_page_alloc/min-order", "0"},
    };
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(kDebugfs, error)) {
      const std::string point = entry.path().filename().string();
      if ((point.starts_with("fail") && std::filesystem::exists(entry.path() / "verbose")))
        wanted.emplace_back(point + "/verbose", stacks ? "2" : "1");
    }
    if (error) return std::unexpected(Error{error.value(), "list", "", kDebugfs});
    for (const auto& [file, value] : wanted) {
      const std::string path = fmt::format("{}/{}", kDebugfs, file);
      VFIOLAB_ASSIGN_OR_RETURN(auto old, text::read_file(path));
      while (!old.empty() && old.back() == '\n') old.pop_back();
      saved_.emplace_back(path, old);
      VFIOLAB_TRY(write_text(path, value));
    }
    return {};
  }

  ~FaultSettings() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (auto put = write_text(it->first, it->second); !put)
        fmt::print(stderr, "vfio_fail_nth_test: could not restore {}: {}\n", it->first, put.error().message());
    }
  }

 private:
  std::vector<std::pair<std::string, std::string>> saved_;
};

// The calling thread's /proc/self/task/TID/fail-nth: armed with N, the
// thread's Nth allocation from now fails; it reads 0 once that happened.
class FailNth {
 public:
  static Result<FailNth> open(pid_t tid) {
    const std::string path = fmt::format("/proc/self/task/{}/fail-nth", tid);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) return std::unexpected(Error{errno, "open", "", path});
    return FailNth(std::move(fd));
  }
  // No allocation of this program's own between these and the calls
  // under test: the numbers are formatted on the stack.
  Result<void> arm(unsigned n) {
    char text[16];
    const int length = std::snprintf(text, sizeof text, "%u", n);
    if (::pwrite(fd_.get(), text, length, 0) != length)
      return std::unexpected(Error{errno, "write fail-nth", "", std::to_string(n)});
    return {};
  }
  Result<void> disarm() { return arm(0); }
  // The allocations left before the fault: 0 once it fired (or when
  // disarmed).
  Result<unsigned> remaining() {
    char text[16] = {};
    const ssize_t got = ::pread(fd_.get(), text, sizeof text - 1, 0);
    if (got <= 0) return std::unexpected(Error{got < 0 ? errno : EIO, "read fail-nth", "", ""});
    return static_cast<unsigned>(std::strtoul(text, nullptr, 10));
  }

 private:
  explicit FailNth(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// Pinned (VmPin: iommufd) and locked (VmLck: type1's accounting) memory of
// this process, from /proc/self/status.
struct PinnedMemory {
  std::uint64_t pinned_kb = 0;
  std::uint64_t locked_kb = 0;
  bool operator==(const PinnedMemory&) const = default;
  std::string str() const { return fmt::format("VmPin {} kB, VmLck {} kB", pinned_kb, locked_kb); }
};

Result<PinnedMemory> pinned_memory() {
  VFIOLAB_ASSIGN_OR_RETURN(auto status, text::read_file("/proc/self/status"));
  PinnedMemory memory;
  auto field = [&](std::string_view name) -> Result<std::uint64_t> {
    const auto at = status.find(fmt::format("\n{}", name));
    if (at == std::string::npos) return std::unexpected(Error{ENOENT, "read /proc/self/status", "", fmt::format("no {} line", name)});
    return std::strtoull(status.c_str() + at + 1 + name.size(), nullptr, 10);
  };
  VFIOLAB_ASSIGN_OR_RETURN(memory.pinned_kb, field("VmPin:"));
  VFIOLAB_ASSIGN_OR_RETURN(memory.locked_kb, field("VmLck:"));
  return memory;
}

// One step of a sequence. A step that is not swept runs with the fault
// held back (it checks what the steps before it did).
struct Step {
  std::string name;
  std::function<Result<void>()> run;
  bool swept = true;
  // What the call may return when an allocation in it fails.
  std::vector<int> errnos = {ENOMEM};
};

// The fault points fail-nth counts at, as their first log line names them.
// An allocation with __GFP_NOWARN fails without a line (kvmalloc's first
// try, for one). IOMMUFD_TEST's fail_iommufd is no allocation: iommufd's
// own test hook, placed where a real failure could happen, and each place
// returns an errno of its choosing (ENOENT from a lookup, EINVAL, EFAULT,
// ENOMEM: drivers/iommu/iommufd/, iommufd_should_fail()), so any error is
// its error.
constexpr std::string_view kQuietAllocation = "an allocation with __GFP_NOWARN (no log line)";
enum class PointKind { allocation, iommufd_hook, unknown };
PointKind point_kind(std::string_view point) {
  if (point == "failslab" || point == "fail_page_alloc" || point == kQuietAllocation) return PointKind::allocation;
  if (point == "fail_iommufd") return PointKind::iommufd_hook;
  return PointKind::unknown;
}

// One run of a sequence: made (opened, allocated) with no fault armed,
// then its steps, then check_state() with no fault armed, then destroyed.
class Sequence {
 public:
  virtual ~Sequence() = default;
  virtual std::vector<Step> steps() = 0;
  // What the first `done` steps did must be there, and nothing of the
  // others. Fails the test (check(), EXPECT) where it is not.
  virtual void check_state(std::size_t done) { (void)done; }
};
using SequenceFactory = std::function<std::unique_ptr<Sequence>()>;

// For check_state(): a state that is not what the steps' results say.
void require(bool holds, std::string_view what) {
  if (!holds) throw harness::CheckFailed(Error{EIO, std::string(what), "", ""});
}

// A device made to copy: its driver initialised in a mapped region, a
// destination buffer mapped, and copies checked byte for byte.
struct CopyRig {
  std::shared_ptr<Iommu> iommu;
  std::unique_ptr<PciDevice> device;
  std::optional<IovaAllocator> iovas;
  std::optional<MappedBuffer> region, dst;
  DriverHandle driver;  // last: removed first, while its buffers are there

  // The device alone, no driver (the sequences that set up interrupts:
  // a driver holds its own).
  static Result<std::unique_ptr<CopyRig>> open_device(IommuMode mode, const std::string& bdf) {
    auto rig = std::make_unique<CopyRig>();
    VFIOLAB_ASSIGN_OR_RETURN(rig->iommu, Iommu::open(mode));
    VFIOLAB_ASSIGN_OR_RETURN(rig->device, PciDevice::open(bdf, rig->iommu));
    return rig;
  }

  static Result<std::unique_ptr<CopyRig>> open(IommuMode mode, const std::string& bdf) {
    VFIOLAB_ASSIGN_OR_RETURN(auto rig, open_device(mode, bdf));
    VFIOLAB_ASSIGN_OR_RETURN(rig->driver, probe_driver(*rig->device, driver_options_from_environment(*rig->device)));
    VFIOLAB_ASSIGN_OR_RETURN(auto iovas, rig->iommu->iova_allocator(rig->driver->iova_limit()));
    rig->iovas.emplace(std::move(iovas));
    VFIOLAB_ASSIGN_OR_RETURN(auto region, rig->iommu->map_new(*rig->iovas, Backing::anonymous,
                                                              rig->driver->region_size()));
    rig->region.emplace(std::move(region));
    VFIOLAB_ASSIGN_OR_RETURN(auto dst, rig->iommu->map_new(*rig->iovas, Backing::anonymous, kCopySize));
    rig->dst.emplace(std::move(dst));
    VFIOLAB_TRY(rig->driver->init(rig->region->region));
    return rig;
  }

  std::uint64_t copy_size() const { return std::min<std::uint64_t>(driver->max_memcpy_size(), kCopySize); }

  // The device copies `size` bytes at `src_iova` (host: `src`) to dst; the
  // data must arrive whole.
  Result<void> copy_checked(std::uint64_t src_iova, const std::byte* src) {
    const std::uint64_t size = copy_size();
    std::memset(dst->memory.bytes(), 0, size);
    VFIOLAB_TRY(driver->memcpy(src_iova, dst->region.iova, size));
    if (std::memcmp(dst->memory.bytes(), src, size) != 0)
      return std::unexpected(Error{EIO, "copy", device->name(),
                                   fmt::format("the device copied {} bytes from IOVA {:#x}, and other data arrived",
                                               size, src_iova)});
    return {};
  }

  // A copy from a fresh buffer of its own: the device and its IOMMU work.
  Result<void> copy_works() {
    VFIOLAB_ASSIGN_OR_RETURN(auto src, iommu->map_new(*iovas, Backing::anonymous, kCopySize));
    for (std::size_t i = 0; i < kCopySize; ++i) src.memory.bytes()[i] = std::byte(i * 7 + 3);
    VFIOLAB_TRY(copy_checked(src.region.iova, src.memory.bytes()));
    VFIOLAB_TRY(iommu->unmap(src.region));
    return {};
  }
};

// What every sweep needs: the settings, the thread's fail-nth, the kernel
// log, the pinned-memory baseline, and the device known to work. The mode
// is the variant's, or -m's for the sequences that do not depend on it.
class FailNthFixture : public testing::Test {
 protected:
  void SetUp() override {
    tid_ = static_cast<pid_t>(::syscall(SYS_gettid));
    if (auto why = FaultSettings::unavailable(tid_)) GTEST_SKIP() << *why;
    VFIOLAB_ASSERT_OK(settings_.apply(verbose_faults.given()));
    fail_.emplace(check(FailNth::open(tid_)));
    log_.emplace(check(KernelLogReader::open()));
    // The program's own heap grows and shrinks without page faults inside
    // a sweep (those would spend the fault on this program, not the
    // kernel's VFIO paths): keep what malloc takes, never trim or unmap.
    ::mallopt(M_TRIM_THRESHOLD, -1);
    ::mallopt(M_MMAP_THRESHOLD, 256 << 20);
    // The device works before any fault, and this is what is pinned with
    // nothing open.
    if (auto works = device_works(); !works) {
      if (works.error().unsupported) GTEST_SKIP() << works.error().message();
      FAIL() << "before the sweep: " << works.error().message();
    }
    baseline_ = check(pinned_memory());
    (void)log_->read_new();  // what came before is not this test's
  }

  virtual IommuMode mode() const { return harness::iommu_mode(); }
  const std::string& bdf() const { return harness::device_bdf(); }

  // Runs the sequence with N = 0 (no fault: it must succeed), then 1, 2, ...
  void sweep(std::string_view name, const SequenceFactory& make) {
    const unsigned limit = static_cast<unsigned>(fault_limit.number_or(4000));
    unsigned errors = 0, absorbed = 0;
    for (unsigned n = 0;; ++n) {
      ASSERT_LE(n, limit) << name << ": still reaching fault points after " << limit
                          << " (raise --max-faults if the kernel's paths grew)";
      bool fired = false, failed = false;
      std::string fired_step, where, point;
      const int failures_at_start = failures_;
      {
        auto sequence = make();
        auto steps = sequence->steps();
        std::size_t done = 0;
        if (n) check(fail_->arm(n), "arm fail-nth");
        for (const Step& step : steps) {
          where = fmt::format("{}, N={}, step '{}'", name, n, step.name);
          unsigned held = 0;
          if (n && !step.swept && !fired) {
            held = check(fail_->remaining());
            check(fail_->disarm());
          }
          auto result = step.run();
          if (n && !fired) {
            if (!step.swept) {
              check(fail_->arm(held));
            } else if (check(fail_->remaining()) == 0) {
              fired = true;
              fired_step = step.name;
              point = fired_point();
            }
          }
          if (!result) {
            if (n) check(fail_->disarm());
            failed = true;
            if (!fired || !step.swept) {
              fail(where, "failed with no fault injected in it: " + result.error().message());
            } else if (fired_step != step.name) {
              fail(where, fmt::format("failed after the fault was absorbed by step '{}': {}", fired_step,
                                      result.error().message()));
            } else if (const int got = result.error().errnum; point_kind(point) == PointKind::unknown) {
              fail(where, fmt::format("fault point '{}' fired, and this test knows no errno for it: {}", point,
                                      result.error().message()));
            } else if (point_kind(point) == PointKind::allocation &&
                       std::find(step.errnos.begin(), step.errnos.end(), got) == step.errnos.end()) {
              std::string names;
              for (int e : step.errnos) names += (names.empty() ? "" : " or ") + std::string(strerrorname_np(e));
              fail(where, fmt::format("{} failed it, and the call returned {}, not {}: {}", point,
                                      got ? strerrorname_np(got) : "no errno", names, result.error().message()));
            } else if (got == 0) {
              fail(where, fmt::format("{} failed it, and the error has no errno: {}", point, result.error().message()));
            }
            break;
          }
          ++done;
        }
        if (n) check(fail_->disarm());
        const std::string state = fmt::format("{}, N={}, fault in step '{}', after {} steps succeeded", name, n,
                                              fired ? fired_step : "none", done);
        // What the steps left is wrong: later N would build on it, so
        // the sweep stops here.
        try {
          sequence->check_state(done);
        } catch (const harness::CheckFailed& failed_check) {
          fail(state, failed_check.what());
          failing_ns_.push_back(n);
          return;
        }
      }
      if (n == 0) {
        ASSERT_FALSE(failed) << name << ": the sequence fails without any fault";
      }
      if (n > 0 && !fired) {
        fmt::print("# {}: {} fault points, {} ended in an error, {} absorbed (the call succeeded and did its work)\n",
                   name, n - 1, errors, absorbed);
        if (HasFailure()) fmt::print("# {}: failures at N = {}\n", name, fmt::join(failing_ns_, ", "));
        return;
      }
      (failed ? errors : absorbed) += n > 0 ? 1 : 0;
      const bool usable = expect_clean_after(fmt::format("{}, N={}, {} in step '{}'", name, n, point, fired_step));
      if (failures_ != failures_at_start) failing_ns_.push_back(n);
      if (!usable) return;
    }
  }

  // After one N, with everything of it closed. A failure here is noted
  // and the sweep goes on (later fault points may hide other bugs), unless
  // the device is lost: then it stops. False to stop.
  bool expect_clean_after(const std::string& what) {
    auto now = check(pinned_memory());
    if (now != baseline_) {
      fail(what, fmt::format("pinned or locked memory left behind: {}, before {}", now.str(), baseline_.str()));
      baseline_ = now;  // each leak is reported once
    }
    auto messages = std::move(backlog_);
    backlog_.clear();
    for (auto& message : log_->read_new()) messages.push_back(std::move(message));
    for (const auto& report : reports_of_this_process(messages))
      fail(what, fmt::format("kernel report:\n  {}", fmt::join(report, "\n  ")));
    if (auto works = device_works(); !works) {
      fail(what, "the device does not work after it: " + works.error().message());
      return false;
    }
    return true;
  }

  // The device works: opened afresh in the mode, with its driver, it
  // copies (checked byte for byte).
  virtual Result<void> device_works() {
    VFIOLAB_ASSIGN_OR_RETURN(auto rig, CopyRig::open(mode(), bdf()));
    return rig->copy_works();
  }

  // The first few failures in full, then a count: a sweep may go on
  // through many.
  void fail(const std::string& what, const std::string& why) {
    if (++failures_ <= 5) ADD_FAILURE() << what << ": " << why;
    else if (failures_ == 6) ADD_FAILURE() << "more failures: their N are listed at the end";
  }

  // The kernel reports among `messages` (kernel_log's kinds), each with
  // the lines after it, leaving out those that name another process
  // ("PID: N"): programs beside this one have reports of their own, which
  // the lab's scan of the whole log attributes.
  static std::vector<std::vector<std::string>> reports_of_this_process(const std::vector<std::string>& messages) {
    std::vector<std::vector<std::string>> reports;
    for (const auto& message : messages) {
      if (kernel_log::classify(message)) reports.emplace_back();
      if (!reports.empty() && reports.back().size() < 40) reports.back().push_back(message);
    }
    const std::string mine = fmt::format("PID: {} ", ::getpid());
    std::erase_if(reports, [&](const std::vector<std::string>& report) {
      bool names_a_pid = false, names_mine = false;
      for (const auto& line : report) {
        if (line.find("PID: ") != std::string::npos) names_a_pid = true;
        if (line.find(mine) != std::string::npos) names_mine = true;
      }
      return names_a_pid && !names_mine;
    });
    return reports;
  }

  // The fault point that fired, from the line it logged ("FAULT_INJECTION:
  // forcing a failure." and "name POINT, interval ..."); the messages read
  // are kept for the report scan.
  std::string fired_point() {
    std::string point(kQuietAllocation);
    bool forced = false;
    for (auto& message : log_->read_new()) {
      if (message.find("FAULT_INJECTION: forcing a failure") != std::string::npos) forced = true;
      if (const auto at = message.find("name "); forced && at != std::string::npos) {
        const auto end = message.find(',', at);
        point = message.substr(at + 5, end == std::string::npos ? std::string::npos : end - at - 5);
        forced = false;
      }
      backlog_.push_back(std::move(message));
    }
    return point;
  }

  pid_t tid_ = 0;
  int failures_ = 0;
  std::vector<unsigned> failing_ns_;
  std::vector<std::string> backlog_;
  FaultSettings settings_;
  std::optional<FailNth> fail_;
  std::optional<KernelLogReader> log_;
  PinnedMemory baseline_;
};

// Opening: the IOMMU (container and IOMMU type, or iommufd and IOAS) and
// the device (group, container attach and GET_DEVICE_FD; or the cdev, bind
// and attach), with its regions mapped.
class OpenSequence : public Sequence {
 public:
  OpenSequence(IommuMode mode, std::string bdf) : mode_(mode), bdf_(std::move(bdf)) {}
  std::vector<Step> steps() override {
    return {
        {"open the IOMMU", [this]() -> Result<void> {
           VFIOLAB_ASSIGN_OR_RETURN(iommu_, Iommu::open(mode_));
           return {};
         }},
        {"open the device", [this]() -> Result<void> {
           VFIOLAB_ASSIGN_OR_RETURN(device_, PciDevice::open(bdf_, iommu_));
           return {};
         }},
    };
  }
  void check_state(std::size_t done) override {
    if (done < 2) return;
    // Opened: the device answers through the fd the open gave.
    require(check(device_->config_read<std::uint16_t>(PCI_VENDOR_ID), "read the opened device's vendor ID") != 0xffff,
            "the opened device reads all ones");
  }

 private:
  IommuMode mode_;
  std::string bdf_;
  std::shared_ptr<Iommu> iommu_;
  std::unique_ptr<PciDevice> device_;
};

class vfio_fail_nth_test : public FailNthFixture, public testing::WithParamInterface<IommuMode> {
 protected:
  IommuMode mode() const override { return GetParam(); }
};

TEST_P(vfio_fail_nth_test, open) {
  sweep("open", [&] { return std::make_unique<OpenSequence>(mode(), bdf()); });
}

// Mapping 2 MiB of one backing, a copy through the mapping (not swept: it
// proves the map did its work), and the unmap.
class MapSequence : public Sequence {
 public:
  MapSequence(std::unique_ptr<CopyRig> rig, DmaBuffer buffer, std::uint64_t iova)
      : rig_(std::move(rig)), buffer_(std::move(buffer)), iova_(iova) {}
  std::vector<Step> steps() override {
    const DmaRegion region{buffer_.data(), iova_, kMapSize};
    return {
        {"map", [this, region] { return rig_->iommu->map(region); }},
        {"copy through the mapping",
         [this]() -> Result<void> {
           // Its first and last pages: the whole range must be mapped.
           const std::uint64_t last = kMapSize - rig_->copy_size();
           VFIOLAB_TRY(rig_->copy_checked(iova_, buffer_.bytes()));
           return rig_->copy_checked(iova_ + last, buffer_.bytes() + last);
         },
         false},
        {"unmap",
         [this]() -> Result<void> {
           VFIOLAB_ASSIGN_OR_RETURN(auto freed, rig_->iommu->unmap(iova_, kMapSize));
           if (freed != kMapSize)
             return std::unexpected(Error{EIO, "unmap", rig_->device->name(),
                                          fmt::format("freed {:#x} bytes of the {:#x} mapped", freed, kMapSize)});
           return {};
         }},
    };
  }
  void check_state(std::size_t done) override {
    // Mapped and not unmapped: the whole mapping; anything else: nothing.
    const std::uint64_t expected = (done == 1 || done == 2) ? kMapSize : 0;
    auto freed = rig_->iommu->unmap(iova_, kMapSize);
    // Native iommufd says ENOENT for a range with nothing mapped; the
    // VFIO containers free 0 bytes.
    if (!freed && freed.error().errnum == ENOENT && rig_->iommu->uses_cdev()) freed = std::uint64_t{0};
    const std::uint64_t got = check(std::move(freed), "unmap the range after the steps");
    require(got == expected, fmt::format("an unmap of the range after {} steps freed {:#x} bytes, not {:#x}", done, got,
                                         expected));
    check(rig_->copy_works(), "a copy after the steps");
  }

 private:
  std::unique_ptr<CopyRig> rig_;
  DmaBuffer buffer_;
  std::uint64_t iova_;
};

#define VFIOLAB_MAP_SWEEP(backing)                                                          \
  TEST_P(vfio_fail_nth_test, map_unmap_##backing) {                                         \
    const auto& info = backing_info(Backing::backing);                                      \
    if (info.hugetlb && free_hugepages(info.page_size) < kMapSize / info.page_size)         \
      GTEST_SKIP() << "no free " << info.page_size / 1024 << " KiB hugepages for " << #backing; \
    sweep("map_unmap " #backing, [&] {                                                      \
      auto rig = check(CopyRig::open(mode(), bdf()));                                       \
      auto buffer = check(DmaBuffer::allocate(Backing::backing, kMapSize));                 \
      for (std::size_t i = 0; i < kMapSize; ++i) buffer.bytes()[i] = std::byte(i * 13 + 1); \
      const std::uint64_t iova = check(rig->iovas->allocate(kMapSize));                     \
      return std::make_unique<MapSequence>(std::move(rig), std::move(buffer), iova);        \
    });                                                                                     \
  }
VFIOLAB_MAP_SWEEP(anonymous)
VFIOLAB_MAP_SWEEP(anonymous_hugetlb_2mb)
VFIOLAB_MAP_SWEEP(memfd)
VFIOLAB_MAP_SWEEP(memfd_hugetlb_2mb)
#undef VFIOLAB_MAP_SWEEP


// The sequences below do not depend on the IOMMU mode: they run in -m's
// (default iommufd); the plan runs the program once per mode for the
// others.
class vfio_fail_nth_device_test : public FailNthFixture {};

// A device opened in the mode, for the sequences on the device fd.
class DeviceSequence : public Sequence {
 public:
  explicit DeviceSequence(std::unique_ptr<CopyRig> rig) : rig_(std::move(rig)) {}

 protected:
  PciDevice& device() { return *rig_->device; }
  std::unique_ptr<CopyRig> rig_;
};

// VFIO_DEVICE_GET_REGION_INFO for every BAR, the ROM and config space,
// capability chains included (sparse mmap areas, the MSI-X table).
class RegionInfoSequence : public DeviceSequence {
 public:
  using DeviceSequence::DeviceSequence;
  std::vector<Step> steps() override {
    std::vector<Step> steps;
    for (std::uint32_t index = 0; index <= VFIO_PCI_CONFIG_REGION_INDEX; ++index) {
      steps.push_back({fmt::format("region info {}", index), [this, index]() -> Result<void> {
                         VFIOLAB_ASSIGN_OR_RETURN(auto info, device().region_info(index));
                         infos_.push_back(std::move(info));
                         return {};
                       }});
    }
    return steps;
  }
  void check_state(std::size_t done) override {
    // What the kernel said under the fault must be what it says without.
    for (std::size_t index = 0; index < done; ++index) {
      auto again = check(device().region_info(static_cast<std::uint32_t>(index)), "region info without a fault");
      const RegionInfo& got = infos_[index];
      require(got.flags == again.flags && got.size == again.size && got.offset == again.offset &&
                  got.sparse_areas.size() == again.sparse_areas.size() && got.msix_mappable == again.msix_mappable,
              fmt::format("region {} info under the fault differs from its info without one", index));
    }
  }

 private:
  std::vector<RegionInfo> infos_;
};

TEST_F(vfio_fail_nth_device_test, region_info) {
  sweep("region_info", [&] { return std::make_unique<RegionInfoSequence>(check(CopyRig::open(mode(), bdf()))); });
}

// VFIO_DEVICE_SET_IRQS: eventfds for up to 4 vectors of one index, a
// software trigger of each (not swept: the vectors must be wired), and
// disabling them again.
class IrqSequence : public DeviceSequence {
 public:
  IrqSequence(std::unique_ptr<CopyRig> rig, IrqIndex index, std::uint32_t count)
      : DeviceSequence(std::move(rig)), index_(index), count_(count) {}
  std::vector<Step> steps() override {
    return {
        {fmt::format("enable {} x{}", irq_index_name(index_), count_),
         [this] { return device().enable_irqs(index_, count_); }, true,
         // The MSI core turns a failed vector allocation into ENOSPC on
         // purpose, so a multi-vector request may be retried with fewer
         // (kernel/irq/msi.c, msi_handle_pci_fail); vfio-pci passes it on.
         index_ == IrqIndex::intx ? std::vector<int>{ENOMEM} : std::vector<int>{ENOMEM, ENOSPC}},
        {"trigger each vector",
         [this]() -> Result<void> {
           for (std::uint32_t vector = 0; vector < count_; ++vector) {
             VFIOLAB_TRY(device().trigger_irq(index_, vector));
             VFIOLAB_ASSIGN_OR_RETURN(auto fired, device().irq_eventfd(vector).wait(std::chrono::seconds(1)));
             if (!fired)
               return std::unexpected(Error{EIO, "trigger", device().name(),
                                            fmt::format("{} vector {}: no eventfd signal", irq_index_name(index_), vector)});
           }
           return {};
         },
         false},
        {"disable", [this] { return device().disable_irqs(index_); }},
    };
  }
  void check_state(std::size_t done) override {
    // Enabled and not disabled: disabling now works; otherwise nothing is
    // left enabled to disable, and enabling works again.
    if (done == 1 || done == 2) {
      check(device().disable_irqs(index_), "disable the vectors the steps left enabled");
      return;
    }
    check(device().enable_irqs(index_, count_), "enable again after the steps");
    check(device().disable_irqs(index_), "disable after enabling again");
  }

 private:
  IrqIndex index_;
  std::uint32_t count_;
};

#define VFIOLAB_IRQ_SWEEP(index)                                                                     \
  TEST_F(vfio_fail_nth_device_test, irq_##index) {                                                   \
    std::uint32_t count = 0;                                                                         \
    {                                                                                                \
      auto rig = check(CopyRig::open_device(mode(), bdf()));                                         \
      count = std::min<std::uint32_t>(check(rig->device->irq_info(IrqIndex::index)).count, 4);       \
    }                                                                                                \
    if (count == 0) GTEST_SKIP() << bdf() << " has no " << irq_index_name(IrqIndex::index) << " interrupt"; \
    sweep("irq " #index, [&] {                                                                       \
      return std::make_unique<IrqSequence>(check(CopyRig::open_device(mode(), bdf())), IrqIndex::index, count); \
    });                                                                                              \
  }
VFIOLAB_IRQ_SWEEP(intx)
VFIOLAB_IRQ_SWEEP(msi)
VFIOLAB_IRQ_SWEEP(msix)
#undef VFIOLAB_IRQ_SWEEP

// VFIO_DEVICE_RESET, then a copy (the driver set up again, not swept).
class ResetSequence : public DeviceSequence {
 public:
  using DeviceSequence::DeviceSequence;
  std::vector<Step> steps() override {
    return {{"reset", [this] { return device().reset(); }}};
  }
};

TEST_F(vfio_fail_nth_device_test, reset) {
  {
    auto rig = check(CopyRig::open(mode(), bdf()));
    if (auto reset = rig->device->reset(); !reset) {
      if (reset.error().unsupported) GTEST_SKIP() << reset.error().message();
      FAIL() << reset.error().message();
    }
  }
  sweep("reset", [&] { return std::make_unique<ResetSequence>(check(CopyRig::open(mode(), bdf()))); });
}

// Native iommufd: the device moved to a second IOAS holding the same
// mappings (VFIO_DEVICE_ATTACH_IOMMUFD_PT while attached replaces). Which
// IOAS the device is in afterwards is judged by DMA: the source buffer is
// unmapped from the IOAS it must have left, and a copy from it must still
// work.
class IoasReplaceSequence : public DeviceSequence {
 public:
  IoasReplaceSequence(std::unique_ptr<CopyRig> rig, std::uint32_t second, MappedBuffer src)
      : DeviceSequence(std::move(rig)), second_(second), src_(std::move(src)) {}
  std::vector<Step> steps() override {
    return {{"replace the IOAS", [this] { return device().attach_ioas(second_); }}};
  }
  void check_state(std::size_t done) override {
    const std::uint32_t left = done == 1 ? rig_->iommu->ioas_id() : second_;
    iommu_ioas_unmap unmap{};
    unmap.size = sizeof(unmap);
    unmap.ioas_id = left;
    unmap.iova = src_.region.iova;
    unmap.length = src_.region.size;
    require(::ioctl(rig_->iommu->iommufd(), IOMMU_IOAS_UNMAP, &unmap) == 0,
            fmt::format("unmap the source from the IOAS the device must have left: {}", std::strerror(errno)));
    check(rig_->copy_checked(src_.region.iova, src_.memory.bytes()),
          done == 1 ? "replaced, but a copy in the second IOAS failed (is the device still in the first?)"
                    : "not replaced, but a copy in the first IOAS failed (did the device leave it?)");
  }

 private:
  std::uint32_t second_;
  MappedBuffer src_;
};

TEST_F(vfio_fail_nth_device_test, ioas_replace) {
  if (mode() != IommuMode::iommufd) GTEST_SKIP() << "IOAS replace is native iommufd's (-m iommufd)";
  sweep("ioas_replace", [&] {
    auto rig = check(CopyRig::open(mode(), bdf()));
    auto src = check(rig->iommu->map_new(*rig->iovas, Backing::anonymous, kCopySize));
    for (std::size_t i = 0; i < kCopySize; ++i) src.memory.bytes()[i] = std::byte(i * 5 + 11);
    iommu_ioas_alloc alloc{};
    alloc.size = sizeof(alloc);
    if (::ioctl(rig->iommu->iommufd(), IOMMU_IOAS_ALLOC, &alloc) != 0)
      throw harness::CheckFailed(Error{errno, "IOMMU_IOAS_ALLOC", "", ""});
    // The second IOAS maps everything the first does, at the same IOVAs.
    for (const MappedBuffer* buffer : {&*rig->region, &*rig->dst, &src}) {
      iommu_ioas_map map{};
      map.size = sizeof(map);
      map.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
      map.ioas_id = alloc.out_ioas_id;
      map.user_va = reinterpret_cast<std::uintptr_t>(buffer->region.vaddr);
      map.length = buffer->region.size;
      map.iova = buffer->region.iova;
      if (::ioctl(rig->iommu->iommufd(), IOMMU_IOAS_MAP, &map) != 0)
        throw harness::CheckFailed(Error{errno, "IOMMU_IOAS_MAP", "", "the second IOAS"});
    }
    return std::make_unique<IoasReplaceSequence>(std::move(rig), alloc.out_ioas_id, std::move(src));
  });
}

// SR-IOV: a VF opened with its PF's VF token, the PF open in the same
// IOMMU (VFIO_GROUP_GET_DEVICE_FD with "BDF vf_token=UUID" in the group
// modes; VFIO_DEVICE_BIND_IOMMUFD with VFIO_DEVICE_BIND_FLAG_TOKEN in
// native iommufd). This is also the open sweep for a device with no INTx
// pin: a VF has none, so its open stays in VFIO and the IOMMU code (a
// device with one evaluates ACPI's _PRT as it is enabled; see the open
// test). The device given is the PF, with VF 0 on vfio-pci, e.g.
//   vfio-setup run -d PF --vfs 1 -- vfio_fail_nth_test -f vfio_fail_nth_sriov_test
// The copy after each N is the PF's (a VF's DMA needs its PF set up as its
// kernel driver would, and igb's PF driver wants no VFs: the copies are
// vfio_pci_sriov_test's); after each N the PF and VF must open again.
constexpr const char* kVfToken = "8f0c1a52-7d3e-4b6a-9e21-5c4d3b2a1f00";

class vfio_fail_nth_sriov_test : public FailNthFixture, public testing::WithParamInterface<IommuMode> {
 protected:
  void SetUp() override {
    const Bdf pf = check(parse_bdf(bdf()));
    auto vf = check(Sysfs().sriov_vf(pf, 0));
    if (!vf)
      GTEST_SKIP() << pf.str() << " has no VF 0 (run under vfio-setup run -d " << pf.str() << " --vfs 1)";
    vf_ = vf->str();
    token_ = check(VfToken::parse(kVfToken));
    if (mode() == IommuMode::iommufd) {
      // As vfio_pci_sriov_test: a kernel from before VFIO_DEVICE_BIND_FLAG_TOKEN
      // refuses the flag, and so a PF's token, with EINVAL.
      auto iommu = check(Iommu::open(mode()));
      auto pf = PciDevice::open(bdf(), iommu, token_);
      if (!pf && pf.error().errnum == EINVAL)
        GTEST_SKIP() << "this kernel's VFIO_DEVICE_BIND_IOMMUFD takes no VF token (no VFIO_DEVICE_BIND_FLAG_TOKEN): "
                     << pf.error().message();
    }
    FailNthFixture::SetUp();
  }
  IommuMode mode() const override { return GetParam(); }

  // The PF and its VF open again with the token, and the VF answers.
  Result<void> device_works() override {
    VFIOLAB_ASSIGN_OR_RETURN(auto iommu, Iommu::open(mode()));
    VFIOLAB_ASSIGN_OR_RETURN(auto pf, PciDevice::open(bdf(), iommu, token_));
    VFIOLAB_ASSIGN_OR_RETURN(auto vf, PciDevice::open(vf_, iommu, token_));
    VFIOLAB_ASSIGN_OR_RETURN(auto vendor, vf->config_read<std::uint16_t>(PCI_VENDOR_ID));
    if (vendor == 0xffff) return std::unexpected(Error{EIO, "the VF opened again reads all ones", vf_, ""});
    return {};
  }

  std::string vf_;
  VfToken token_{};
};

class VfOpenSequence : public Sequence {
 public:
  VfOpenSequence(std::shared_ptr<Iommu> iommu, std::unique_ptr<PciDevice> pf, std::string vf, VfToken token)
      : iommu_(std::move(iommu)), pf_(std::move(pf)), vf_bdf_(std::move(vf)), token_(token) {}
  std::vector<Step> steps() override {
    return {{"open the VF with the PF's token", [this]() -> Result<void> {
               VFIOLAB_ASSIGN_OR_RETURN(vf_, PciDevice::open(vf_bdf_, iommu_, token_));
               return {};
             }}};
  }
  void check_state(std::size_t done) override {
    if (done == 0) vf_ = check(PciDevice::open(vf_bdf_, iommu_, token_), "open the VF after its open failed");
    require(check(vf_->config_read<std::uint16_t>(PCI_VENDOR_ID), "read the VF's vendor ID") != 0xffff,
            "the opened VF reads all ones");
  }

 private:
  std::shared_ptr<Iommu> iommu_;
  std::unique_ptr<PciDevice> pf_;
  std::string vf_bdf_;
  VfToken token_;
  std::unique_ptr<PciDevice> vf_;  // closed before the PF
};

TEST_P(vfio_fail_nth_sriov_test, vf_token_open) {
  sweep("vf_token_open", [&] {
    auto iommu = check(Iommu::open(mode()));
    auto pf = check(PciDevice::open(bdf(), iommu, token_), "open the PF with the token");
    return std::make_unique<VfOpenSequence>(iommu, std::move(pf), vf_, token_);
  });
}

INSTANTIATE_TEST_SUITE_P(vfio_fail_nth_sriov_test, vfio_fail_nth_sriov_test, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);

INSTANTIATE_TEST_SUITE_P(vfio_fail_nth_test, vfio_fail_nth_test, testing::ValuesIn(harness::all_modes()),
                         harness::mode_variant_name);

}  // namespace
}  // namespace vfiolab
