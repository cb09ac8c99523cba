// vfio-setup hugepages: reserve HugeTLB pages, recording the counts there
// were, or give those back.
#include "commands.h"
#include "common.h"

#include "vfiolab/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <system_error>

namespace vfiolab::setup {
namespace fs = std::filesystem;
namespace {

fs::path nr_hugepages(unsigned kib) {
  return fs::path(fmt::format("/sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages", kib));
}

// The pages in the pool of `kib` pages now; nullopt when the kernel has no
// such pool.
Result<std::optional<unsigned>> pool_pages(unsigned kib) {
  const fs::path file = nr_hugepages(kib);
  VFIOLAB_ASSIGN_OR_RETURN(const auto text, text::read_file_if_present(file));
  if (!text) return std::optional<unsigned>();
  VFIOLAB_ASSIGN_OR_RETURN(const unsigned count, parse_count(*text, "read " + file.string()));
  return std::optional<unsigned>(count);
}

}  // namespace

int command_hugepages(const std::vector<std::string>& args) {
  if (auto root = require_root("hugepages", "reserving hugepages writes to sysfs"); !root) {
    say(root.error());
    return kExitFailed;
  }
  constexpr const char* kUsage = "usage: hugepages [--2m N] [--1g N] | hugepages --release";
  unsigned want_2m = 16, want_1g = 1;
  bool release = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--release") {
      release = true;
    } else if ((args[i] == "--2m" || args[i] == "--1g") && i + 1 < args.size()) {
      auto count = parse_count(args[i + 1], "hugepages " + args[i]);
      if (!count) {
        say(count.error());
        say(kUsage);
        return kExitUsage;
      }
      (args[i] == "--2m" ? want_2m : want_1g) = *count;
      ++i;
    } else {
      say(kUsage);
      return kExitUsage;
    }
  }
  auto pool_2m = pool_pages(2048);
  if (!pool_2m) {
    say(pool_2m.error());
    return kExitFailed;
  }
  auto pool_1g = pool_pages(1048576);
  if (!pool_1g) {
    say(pool_1g.error());
    return kExitFailed;
  }
  const std::optional<unsigned> now_2m = *pool_2m;
  const std::optional<unsigned> now_1g = *pool_1g;
  const fs::path state_path = hugepage_state_file();

  if (release) {
    auto text = text::read_file_if_present(state_path);
    if (!text) {
      say(text.error());
      return kExitFailed;
    }
    if (!*text) {
      say("hugepages: nothing recorded; counts left as they are");
      return kExitOk;
    }
    auto state = parse_hugepage_state(**text);
    if (!state) {
      say(make_error(0, "hugepages --release",
                     fmt::format("{} is corrupt ({}); not trusting it", state_path.string(), state.error().context)));
      return kExitFailed;
    }
    Result<void> done;
    if (now_2m) done = write_sysfs(nr_hugepages(2048), std::to_string(state->pages_2m));
    if (done && now_1g) done = write_sysfs(nr_hugepages(1048576), std::to_string(state->pages_1g));
    if (done) done = remove_state(state_path);
    if (!done) {
      say(done.error());
      return kExitFailed;
    }
    say(fmt::format("hugepages: back to {} x 2 MiB, {} x 1 GiB", state->pages_2m, state->pages_1g));
    return kExitOk;
  }

  if (!now_2m) {
    say("hugepages: this kernel has no 2 MiB HugeTLB pages (CONFIG_HUGETLBFS off?)");
    return kExitFailed;
  }
  // Keep the first recorded counts: a second reserve must not make the
  // reserved counts look like the original ones.
  std::error_code ec;
  const bool recorded = fs::exists(state_path, ec);
  if (ec) {
    say(make_error(ec.value(), "cannot check " + state_path.string()));
    return kExitFailed;
  }
  if (!recorded) {
    HugepageState previous{*now_2m, now_1g.value_or(0)};
    if (auto written = write_state(state_path, serialize(previous)); !written) {
      say(written.error());
      return kExitFailed;
    }
  }
  Result<void> done = write_sysfs(nr_hugepages(2048), std::to_string(std::max(want_2m, *now_2m)));
  if (done && now_1g && want_1g > *now_1g) done = write_sysfs(nr_hugepages(1048576), std::to_string(want_1g));
  // A count that cannot be read back counts as nothing reserved.
  auto pages_now = [](unsigned kib) {
    auto pages = pool_pages(kib);
    return pages && *pages ? **pages : 0u;
  };
  auto got_2m = pages_now(2048);
  auto got_1g = pages_now(1048576);
  say(fmt::format("hugepages: {} x 2 MiB (asked {}), {} x 1 GiB (asked {}){}", got_2m, want_2m, got_1g, want_1g,
                  now_1g ? "" : "; no 1 GiB pages on this machine"));
  if (!done) say(done.error());
  if (!done || got_2m < want_2m || (now_1g && got_1g < want_1g)) {
    say("hugepages: fewer pages than asked (memory too fragmented? reserve them on the kernel command line)");
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace vfiolab::setup
