// A minimal KVM virtual machine for tests: vCPUs in 64-bit long mode with an
// in-kernel local APIC (xAPIC or x2APIC), guest code that is ordinary C++
// compiled into the test binary, calls from the guest to the host (ucall),
// and the plumbing that routes a device's interrupt into the guest (irqfd
// and MSI routes).
//
// Guest memory. The guest sees two regions at the virtual addresses the
// test process has them at, so a pointer means the same on both sides:
//   - the test binary's loaded image (its code, constants and globals), from
//     the first to the last PT_LOAD segment, so guest functions run where
//     they were linked and can use globals and string literals;
//   - an arena (anonymous memory) for the page tables, GDT, IDT, TSS, the
//     vCPUs' stacks and whatever the test allocates to share with the guest.
// Each is one memory slot (KVM_SET_USER_MEMORY_REGION) at a low guest
// physical address; 4-level page tables map each page of it at its host
// virtual address, and the xAPIC page at 0xfee00000 to itself. Shared
// libraries (libc) are not mapped: guest code must not call them.
//
// What /dev/kvm lacks (no device node, no in-kernel irqchip, no irqfd, ...)
// is reported as an `unsupported` Error, so a test can SKIP with the reason.
#pragma once

#include "vfiolab/error.h"
#include "vfiolab/kvm/guest_abi.h"
#include "vfiolab/kvm/x86.h"
#include "vfiolab/unique_fd.h"

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vfiolab::kvm {

// /dev/kvm and what it offers.
class Kvm {
  struct Key {
    explicit Key() = default;
  };

 public:
  explicit Kvm(Key) {}
  // unsupported when there is no /dev/kvm (or it cannot be opened) or its
  // API version is not 12.
  static Result<std::shared_ptr<const Kvm>> open();
  int fd() const { return fd_.get(); }
  // KVM_CHECK_EXTENSION: 0 when absent, else a capability-specific value.
  int extension(long capability) const;
  // An unsupported Error naming the capability when it is absent.
  Result<void> require(long capability, std::string_view name) const;
  const std::vector<kvm_cpuid_entry2>& supported_cpuid() const { return cpuid_; }
  std::size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }

 private:
  UniqueFd fd_;
  std::vector<kvm_cpuid_entry2> cpuid_;
  std::size_t vcpu_mmap_size_ = 0;
};

// Guest memory that is not the binary's image: a bump allocator whose
// pointers are valid in the guest too.
class GuestArena {
 public:
  GuestArena() = default;
  static Result<GuestArena> create(std::size_t size);
  void* allocate(std::size_t size, std::size_t alignment = 16);
  // A T constructed in guest memory, or nullptr when the arena is full.
  template <typename T, typename... Args>
  T* make(Args&&... args) {
    void* memory = allocate(sizeof(T), alignof(T) < 16 ? 16 : alignof(T));
    return memory ? new (memory) T(std::forward<Args>(args)...) : nullptr;
  }
  std::byte* base() const { return mapping_.bytes(); }
  std::size_t size() const { return mapping_.size(); }
  bool contains(const void* address, std::size_t size = 1) const;

 private:
  explicit GuestArena(MemoryMapping mapping) : mapping_(std::move(mapping)) {}
  MemoryMapping mapping_;
  std::size_t used_ = 0;
};

class Vm;

class Vcpu {
 public:
  Vcpu(Vm& vm, std::uint32_t id, UniqueFd fd, MemoryMapping run, void* stack_top)
      : vm_(vm), id_(id), fd_(std::move(fd)), run_(std::move(run)), stack_top_(stack_top) {}
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  std::uint32_t id() const { return id_; }  // also its APIC ID
  int fd() const { return fd_.get(); }
  kvm_run* run_state() const { return static_cast<kvm_run*>(run_.get()); }

  // Points the vCPU at function(argument), on its own stack in the arena,
  // interrupts disabled. The vCPU is already in long mode (Vm::create).
  Result<void> start(GuestFunction function, void* argument);
  template <typename T>
  Result<void> start(void (*function)(T*), T* argument) {
    return start(reinterpret_cast<GuestFunction>(function), static_cast<void*>(argument));
  }
  // KVM_RUN until the guest calls the host; any other exit (a triple fault,
  // an emulation failure, an unexpected I/O or MMIO access) is an Error
  // that says what happened and where.
  Result<Ucall> run();
  // run() until the guest function returns; sync calls are passed over, a
  // guest failure is an Error with its file, line, text and values.
  Result<void> run_until_done();

  Result<kvm_regs> regs() const;
  Result<void> set_regs(const kvm_regs& regs);
  Result<kvm_sregs> sregs() const;
  Result<void> set_sregs(const kvm_sregs& sregs);
  Result<kvm_debugregs> debugregs() const;
  Result<void> set_debugregs(const kvm_debugregs& debugregs);
  // KVM_SET_GUEST_DEBUG: the host debugs the guest (software breakpoints,
  // hardware breakpoints from debug.arch.debugreg, single steps), each hit
  // a KVM_EXIT_DEBUG. unsupported without KVM_CAP_SET_GUEST_DEBUG, or when
  // debug.control has a flag KVM_CAP_SET_GUEST_DEBUG2 does not list.
  Result<void> set_guest_debug(const kvm_guest_debug& debug);
  // run() until KVM exits with KVM_EXIT_DEBUG, and what KVM said about it
  // (exception vector, pc, DR6, DR7). A ucall of any kind first (the guest
  // finished, or failed) is an Error, as any other exit is.
  Result<kvm_debug_exit_arch> run_until_debug_exit();
  // KVM_GET_MP_STATE (which also makes the vCPU take a pending INIT or SIPI).
  Result<std::uint32_t> mp_state() const;
  Result<void> set_mp_state(std::uint32_t state);
  Result<std::uint64_t> msr(std::uint32_t index) const;
  // The guest's TSC reads host TSC + offset (KVM_VCPU_TSC_OFFSET; offset 0
  // puts guest and host on one clock). unsupported without
  // KVM_CAP_VCPU_ATTRIBUTES or the attribute.
  Result<void> set_tsc_offset(std::int64_t offset);

 private:
  Error vcpu_error(int err, std::string operation) const;  // err: the caller's saved errno
  // A KVM_GET_* / KVM_SET_* of one struct.
  template <typename T>
  Result<T> get(unsigned long request, const char* name) const;
  template <typename T>
  Result<void> set(unsigned long request, const char* name, const T& value);
  Error exit_error(const kvm_run& run) const;
  Error guest_failure(const Ucall& call) const;
  Vm& vm_;
  std::uint32_t id_;
  UniqueFd fd_;
  MemoryMapping run_;
  void* stack_top_;
};

struct VmOptions {
  std::uint32_t vcpus = 1;
  // The vCPUs' ids (and APIC IDs), when not 0 to vcpus - 1: `vcpus` is then
  // ignored. KVM refuses ids from KVM_CAP_MAX_VCPU_ID on.
  std::vector<std::uint32_t> vcpu_ids = {};
  // KVM_CAP_X2APIC_API with KVM_X2APIC_API_USE_32BIT_IDS and
  // KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK, before any vCPU: MSI routes name
  // x2APIC IDs above 255 (x86::msi_message), and destination 0xff is APIC ID
  // 255 rather than a broadcast. unsupported without the capability.
  bool x2apic_32bit_ids = false;
  std::size_t arena_size = 8u << 20;
  std::size_t stack_size = 64u << 10;
};

class Vm {
  struct Key {
    explicit Key() = default;
  };

 public:
  Vm(Key, std::shared_ptr<const Kvm> kvm) : kvm_(std::move(kvm)) {}
  // A VM with an in-kernel irqchip (KVM_CREATE_IRQCHIP: local APICs, IOAPIC
  // and PIC), guest memory and page tables, a GDT, a TSS and an IDT whose
  // every vector goes to the handler table, and `options.vcpus` vCPUs in
  // long mode. Needs KVM_CAP_IRQCHIP, KVM_CAP_USER_MEMORY, KVM_CAP_EXT_CPUID.
  static Result<std::unique_ptr<Vm>> create(std::shared_ptr<const Kvm> kvm, const VmOptions& options = {});
  static Result<std::unique_ptr<Vm>> create(const VmOptions& options = {});
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  const Kvm& kvm() const { return *kvm_; }
  int fd() const { return fd_.get(); }
  std::size_t vcpu_count() const { return vcpus_.size(); }
  // Whether [address, address + size) is guest memory (arena or image).
  bool in_guest_memory(const void* address, std::size_t size) const;
  Vcpu& vcpu(std::size_t index) { return *vcpus_.at(index); }
  GuestArena& arena() { return arena_; }

  // Adds one more vCPU (its id is the next index, or `id`), set up like the
  // others.
  Result<Vcpu*> add_vcpu();
  Result<Vcpu*> add_vcpu(std::uint32_t id);

  // The guest's handler of `vector`; nullptr makes it unexpected (a guest
  // failure). The table is per process (guest_abi.h).
  void set_handler(std::uint8_t vector, InterruptHandler handler);

  // Interrupt routing. KVM_SET_GSI_ROUTING replaces the whole table, so the
  // VM keeps every route it set and sends them all each time. The table has
  // only these MSI routes: once one is set, the default routes of the IOAPIC
  // and PIC pins (GSIs 0-23) are gone, which no test here uses. A route the
  // kernel refuses is not kept.
  Result<void> set_msi_route(std::uint32_t gsi, const x86::MsiMessage& message);
  // KVM_SET_GSI_ROUTING with no entries: every route is gone (also the
  // ones this VM kept), until set_msi_route sets one again.
  Result<void> clear_routes();
  // KVM_IRQFD: a write to `eventfd` injects `gsi`.
  Result<void> assign_irqfd(std::uint32_t gsi, int eventfd);
  Result<void> deassign_irqfd(std::uint32_t gsi, int eventfd);
  // KVM_SIGNAL_MSI: inject an MSI now, as a device would.
  Result<void> signal_msi(const x86::MsiMessage& message);
  // The first GSI past the irqchip's pins, free for MSI routes.
  static constexpr std::uint32_t kFirstMsiGsi = 24;

 private:
  Result<void> set_up_memory();
  Result<void> set_user_memory_region(std::uint32_t slot, std::uint64_t gpa, void* host, std::size_t size);
  Result<void> map_page(std::uint64_t gva, std::uint64_t gpa);
  std::uint64_t* page_table_entry(std::uint64_t* table, std::size_t index);
  std::uint64_t gpa_of(const void* arena_address) const;
  Result<void> configure_vcpu(Vcpu& vcpu);
  Error vm_error(int err, std::string operation, std::string context = {}) const;  // err: the saved errno

  std::shared_ptr<const Kvm> kvm_;
  UniqueFd fd_;
  GuestArena arena_;
  std::size_t stack_size_ = 0;
  std::uint64_t arena_gpa_ = 0;
  std::uint64_t* pml4_ = nullptr;
  std::uint64_t* gdt_ = nullptr;
  std::uint64_t* idt_ = nullptr;
  std::byte* tss_ = nullptr;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::byte* image_begin_ = nullptr;
  std::byte* image_end_ = nullptr;
  std::map<std::uint32_t, x86::MsiMessage> msi_routes_;
};

}  // namespace vfiolab::kvm
