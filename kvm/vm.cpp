// The host side of the KVM library: see vm.h.
#include "vfiolab/kvm/vm.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <link.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vfiolab::kvm {
namespace {

constexpr int kKvmApiVersion = 12;
// Guest physical addresses of the two memory slots; both stay below the
// xAPIC page at 0xfee00000.
constexpr std::uint32_t kArenaSlot = 0;
constexpr std::uint32_t kImageSlot = 1;
constexpr std::uint64_t kArenaGpa = 1ull << 30;
constexpr std::uint64_t kImageGpa = 2ull << 30;
// GDT selectors.
constexpr std::uint16_t kCodeSelector = 0x08;
constexpr std::uint16_t kDataSelector = 0x10;
constexpr std::uint16_t kTssSelector = 0x18;
constexpr std::size_t kGdtEntries = 5;  // null, code, data, and the 16-byte TSS descriptor
constexpr std::size_t kTssSize = 0x68;

std::uint64_t align_down(std::uint64_t value, std::uint64_t alignment) { return value & ~(alignment - 1); }
std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment) { return align_down(value + alignment - 1, alignment); }

// A segment descriptor (8 bytes) as the GDT holds it.
std::uint64_t segment_descriptor(std::uint32_t base, std::uint32_t limit, std::uint8_t access, std::uint8_t flags) {
  return (limit & 0xffffull) | (static_cast<std::uint64_t>(base & 0xffffff) << 16) |
         (static_cast<std::uint64_t>(access) << 40) | (static_cast<std::uint64_t>((limit >> 16) & 0xf) << 48) |
         (static_cast<std::uint64_t>(flags & 0xf) << 52) | (static_cast<std::uint64_t>(base >> 24) << 56);
}

kvm_segment code_segment() {
  kvm_segment segment{};
  segment.base = 0;
  segment.limit = 0xffffffff;
  segment.selector = kCodeSelector;
  segment.type = 0xb;  // execute/read, accessed
  segment.present = 1;
  segment.s = 1;
  segment.l = 1;
  segment.g = 1;
  return segment;
}

kvm_segment data_segment() {
  kvm_segment segment{};
  segment.limit = 0xffffffff;
  segment.selector = kDataSelector;
  segment.type = 0x3;  // read/write, accessed
  segment.present = 1;
  segment.s = 1;
  segment.db = 1;
  segment.g = 1;
  return segment;
}

// The main program's loaded image: from its first PT_LOAD page to the end
// of its last.
struct ImageRange {
  std::uintptr_t begin = UINTPTR_MAX;
  std::uintptr_t end = 0;
};

int find_main_program(dl_phdr_info* info, std::size_t, void* data) {
  auto* range = static_cast<ImageRange*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& header = info->dlpi_phdr[i];
    if (header.p_type != PT_LOAD) continue;
    const std::uintptr_t start = info->dlpi_addr + header.p_vaddr;
    range->begin = std::min<std::uintptr_t>(range->begin, align_down(start, x86::kPageSize));
    range->end = std::max<std::uintptr_t>(range->end, align_up(start + header.p_memsz, x86::kPageSize));
  }
  return 1;  // the main program comes first; stop there
}

std::string_view exit_reason_name(std::uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN: return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_IO: return "KVM_EXIT_IO";
    case KVM_EXIT_DEBUG: return "KVM_EXIT_DEBUG";
    case KVM_EXIT_HLT: return "KVM_EXIT_HLT";
    case KVM_EXIT_MMIO: return "KVM_EXIT_MMIO";
    case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTR: return "KVM_EXIT_INTR";
    case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT: return "KVM_EXIT_SYSTEM_EVENT";
    case KVM_EXIT_X86_RDMSR: return "KVM_EXIT_X86_RDMSR";
    case KVM_EXIT_X86_WRMSR: return "KVM_EXIT_X86_WRMSR";
    default: return "exit";
  }
}

}  // namespace

// ---- Kvm

Result<std::shared_ptr<const Kvm>> Kvm::open() {
  auto kvm = std::make_shared<Kvm>(Key{});
  kvm->fd_.reset(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm->fd_) {
    const int error = errno;
    if (error == ENOENT || error == ENODEV || error == ENXIO || error == EACCES || error == EPERM) {
      return std::unexpected(unsupported_error(
          error, "open /dev/kvm",
          error == ENOENT ? "no KVM here: the kernel lacks it or the CPU has no virtualization (VMX/SVM) to offer"
                          : "KVM is not usable here"));
    }
    return std::unexpected(make_error(error, "open /dev/kvm"));
  }
  const int version = ::ioctl(kvm->fd(), KVM_GET_API_VERSION, 0);
  if (version != kKvmApiVersion) {
    return std::unexpected(unsupported_error(0, "KVM_GET_API_VERSION",
                                             fmt::format("API version {}, not {}", version, kKvmApiVersion)));
  }
  const int mmap_size = ::ioctl(kvm->fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size <= 0) {
    const int err = errno;
    return std::unexpected(make_error(err, "KVM_GET_VCPU_MMAP_SIZE"));
  }
  kvm->vcpu_mmap_size_ = static_cast<std::size_t>(mmap_size);

  VFIOLAB_TRY(kvm->require(KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"));
  // KVM_GET_SUPPORTED_CPUID says E2BIG until the buffer is large enough.
  for (std::uint32_t entries = 64;; entries *= 2) {
    std::vector<std::uint64_t> buffer((sizeof(kvm_cpuid2) + entries * sizeof(kvm_cpuid_entry2)) / 8 + 1);
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buffer.data());
    cpuid->nent = entries;
    if (::ioctl(kvm->fd(), KVM_GET_SUPPORTED_CPUID, cpuid) == 0) {
      kvm->cpuid_.assign(cpuid->entries, cpuid->entries + cpuid->nent);
      break;
    }
    const int err = errno;
    if (err != E2BIG || entries > 4096) {
      return std::unexpected(make_error(err, "KVM_GET_SUPPORTED_CPUID"));
    }
  }
  return std::shared_ptr<const Kvm>(std::move(kvm));
}

int Kvm::extension(long capability) const {
  const int value = ::ioctl(fd(), KVM_CHECK_EXTENSION, capability);
  return value < 0 ? 0 : value;
}

Result<void> Kvm::require(long capability, std::string_view name) const {
  if (extension(capability) > 0) return {};
  return std::unexpected(
      unsupported_error(0, "KVM_CHECK_EXTENSION", fmt::format("this KVM does not offer {}", name)));
}

// ---- GuestArena

Result<GuestArena> GuestArena::create(std::size_t size) {
  size = align_up(size, x86::kPageSize);
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (address == MAP_FAILED) {
    const int err = errno;
    return std::unexpected(make_error(err, "mmap guest arena", fmt::format("{} bytes", size)));
  }
  return GuestArena(MemoryMapping(address, size));
}

void* GuestArena::allocate(std::size_t size, std::size_t alignment) {
  const std::size_t start = align_up(used_, alignment);
  if (start + size > mapping_.size()) return nullptr;
  used_ = start + size;
  return base() + start;
}

bool GuestArena::contains(const void* address, std::size_t size) const {
  const auto* p = static_cast<const std::byte*>(address);
  return p >= base() && size <= mapping_.size() && p - base() <= static_cast<std::ptrdiff_t>(mapping_.size() - size);
}

// ---- Vm

Result<std::unique_ptr<Vm>> Vm::create(const VmOptions& options) {
  VFIOLAB_ASSIGN_OR_RETURN(auto kvm, Kvm::open());
  return create(std::move(kvm), options);
}

Result<std::unique_ptr<Vm>> Vm::create(std::shared_ptr<const Kvm> kvm, const VmOptions& options) {
  for (auto [capability, name] : {std::pair{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
                                  std::pair{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"}}) {
    VFIOLAB_TRY(kvm->require(capability, name));
  }
  auto vm = std::make_unique<Vm>(Key{}, std::move(kvm));
  vm->fd_.reset(::ioctl(vm->kvm().fd(), KVM_CREATE_VM, 0));
  if (!vm->fd_) {
    const int err = errno;
    return std::unexpected(make_error(err, "KVM_CREATE_VM"));
  }
  if (::ioctl(vm->fd(), KVM_CREATE_IRQCHIP, 0) != 0) {
    const int err = errno;
    return std::unexpected(vm->vm_error(err, "KVM_CREATE_IRQCHIP"));
  }

  VFIOLAB_ASSIGN_OR_RETURN(vm->arena_, GuestArena::create(options.arena_size));
  vm->stack_size_ = align_up(options.stack_size, 16);
  VFIOLAB_TRY(vm->set_up_memory());
  if (options.x2apic_32bit_ids) {
    VFIOLAB_TRY(vm->kvm().require(KVM_CAP_X2APIC_API, "KVM_CAP_X2APIC_API"));
    kvm_enable_cap cap{};
    cap.cap = KVM_CAP_X2APIC_API;
    cap.args[0] = KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK;
    if (::ioctl(vm->fd(), KVM_ENABLE_CAP, &cap) != 0) {
      const int err = errno;
      return std::unexpected(vm->vm_error(err, "KVM_ENABLE_CAP KVM_CAP_X2APIC_API"));
    }
  }
  if (!options.vcpu_ids.empty()) {
    for (std::uint32_t id : options.vcpu_ids) VFIOLAB_TRY(vm->add_vcpu(id));
    return vm;
  }
  for (std::uint32_t i = 0; i < options.vcpus; ++i) {
    VFIOLAB_TRY(vm->add_vcpu());
  }
  return vm;
}

Error Vm::vm_error(int err, std::string operation, std::string context) const {
  return make_error(err, std::move(operation), context.empty() ? "KVM VM" : "KVM VM: " + context);
}

Result<void> Vm::set_user_memory_region(std::uint32_t slot, std::uint64_t gpa, void* host, std::size_t size) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<std::uintptr_t>(host);
  if (::ioctl(fd(), KVM_SET_USER_MEMORY_REGION, &region) != 0) {
    const int err = errno;
    return std::unexpected(
        vm_error(err, "KVM_SET_USER_MEMORY_REGION", fmt::format("slot {} gpa {:#x} size {:#x} at {}", slot, gpa, size, host)));
  }
  return {};
}

std::uint64_t Vm::gpa_of(const void* arena_address) const {
  return arena_gpa_ + static_cast<std::uint64_t>(static_cast<const std::byte*>(arena_address) - arena_.base());
}

bool Vm::in_guest_memory(const void* address, std::size_t size) const {
  if (arena_.contains(address, size)) return true;
  const auto* p = static_cast<const std::byte*>(address);
  return p >= image_begin_ && p + size <= image_end_;
}

// The entry at `index` of a page table, pointing to a new (zeroed) table
// from the arena when it was empty. Returns that next table.
std::uint64_t* Vm::page_table_entry(std::uint64_t* table, std::size_t index) {
  if (!(table[index] & x86::kPtePresent)) {
    void* next = arena_.allocate(x86::kPageSize, x86::kPageSize);
    if (!next) return nullptr;
    table[index] = gpa_of(next) | x86::kPtePresent | x86::kPteWritable;
  }
  const std::uint64_t next_gpa = table[index] & x86::kPteAddressMask;
  return reinterpret_cast<std::uint64_t*>(arena_.base() + (next_gpa - arena_gpa_));
}

Result<void> Vm::map_page(std::uint64_t gva, std::uint64_t gpa) {
  std::uint64_t* table = pml4_;
  for (int shift = 39; shift > 12; shift -= 9) {
    table = page_table_entry(table, (gva >> shift) & 0x1ff);
    if (!table) return std::unexpected(make_error(ENOMEM, "guest page tables", "the arena is full; ask for a larger one"));
  }
  std::uint64_t& pte = table[(gva >> 12) & 0x1ff];
  pte = (gpa & x86::kPteAddressMask) | x86::kPtePresent | x86::kPteWritable;
  if (gpa == x86::kApicDefaultPhysicalBase) pte |= x86::kPteCacheDisable | x86::kPteWriteThrough;
  return {};
}

Result<void> Vm::set_up_memory() {
  // The binary's image.
  ImageRange image;
  ::dl_iterate_phdr(find_main_program, &image);
  if (image.begin >= image.end) return std::unexpected(make_error(ENOEXEC, "dl_iterate_phdr", "no PT_LOAD segment in the main program"));
  image_begin_ = reinterpret_cast<std::byte*>(image.begin);
  image_end_ = reinterpret_cast<std::byte*>(image.end);
  const std::uint64_t image_size = image.end - image.begin;
  if (kImageGpa + image_size > x86::kApicDefaultPhysicalBase) {
    return std::unexpected(make_error(EFBIG, "guest memory", fmt::format("the program image is {} bytes", image_size)));
  }
  const auto arena_begin = reinterpret_cast<std::uintptr_t>(arena_.base());
  for (auto [begin, end] : {std::pair{image.begin, image.end}, std::pair{arena_begin, arena_begin + arena_.size()}}) {
    if (begin < x86::kApicDefaultPhysicalBase + x86::kPageSize && end > x86::kApicDefaultPhysicalBase) {
      return std::unexpected(make_error(EEXIST, "guest memory", "the program or the arena lies over the xAPIC page at 0xfee00000"));
    }
  }
  arena_gpa_ = kArenaGpa;
  VFIOLAB_TRY(set_user_memory_region(kArenaSlot, arena_gpa_, arena_.base(), arena_.size()));
  VFIOLAB_TRY(set_user_memory_region(kImageSlot, kImageGpa, image_begin_, image_size));

  // Page tables: every page at its host address, and the xAPIC page.
  pml4_ = static_cast<std::uint64_t*>(arena_.allocate(x86::kPageSize, x86::kPageSize));
  for (std::uint64_t offset = 0; offset < arena_.size(); offset += x86::kPageSize) {
    VFIOLAB_TRY(map_page(arena_begin + offset, arena_gpa_ + offset));
  }
  for (std::uint64_t offset = 0; offset < image_size; offset += x86::kPageSize) {
    VFIOLAB_TRY(map_page(image.begin + offset, kImageGpa + offset));
  }
  VFIOLAB_TRY(map_page(x86::kApicDefaultPhysicalBase, x86::kApicDefaultPhysicalBase));

  // GDT: a 64-bit code segment, a data segment and the TSS. The guest never
  // leaves ring 0 and uses no IST, but KVM (VMX) wants a usable TR.
  gdt_ = static_cast<std::uint64_t*>(arena_.allocate(kGdtEntries * 8, 16));
  tss_ = static_cast<std::byte*>(arena_.allocate(kTssSize, 16));
  idt_ = static_cast<std::uint64_t*>(arena_.allocate(256 * 16, 16));
  if (!pml4_ || !gdt_ || !tss_ || !idt_) return std::unexpected(make_error(ENOMEM, "guest tables", "the arena is full"));
  const auto tss_base = reinterpret_cast<std::uint64_t>(tss_);
  gdt_[0] = 0;
  gdt_[kCodeSelector / 8] = segment_descriptor(0, 0xfffff, 0x9b, 0xa);  // present, code, L, 4 KiB granularity
  gdt_[kDataSelector / 8] = segment_descriptor(0, 0xfffff, 0x93, 0xc);  // present, data, 32-bit, 4 KiB granularity
  gdt_[kTssSelector / 8] = segment_descriptor(static_cast<std::uint32_t>(tss_base), kTssSize - 1, 0x8b, 0);  // busy TSS
  gdt_[kTssSelector / 8 + 1] = tss_base >> 32;

  // IDT: interrupt gates (interrupts off in the handler) to each stub.
  const auto stubs = reinterpret_cast<std::uint64_t>(vfiolab_kvm_interrupt_stubs);
  for (std::uint64_t vector = 0; vector < 256; ++vector) {
    const std::uint64_t handler = stubs + vector * kInterruptStubSize;
    idt_[vector * 2] = (handler & 0xffff) | (static_cast<std::uint64_t>(kCodeSelector) << 16) |
                       (0x8eull << 40) | (((handler >> 16) & 0xffff) << 48);
    idt_[vector * 2 + 1] = handler >> 32;
  }
  set_handler(x86::kVectorApicSpurious, vfiolab_kvm_ignore_interrupt);
  return {};
}

void Vm::set_handler(std::uint8_t vector, InterruptHandler handler) { vfiolab_kvm_interrupt_handlers[vector] = handler; }

Result<Vcpu*> Vm::add_vcpu() { return add_vcpu(static_cast<std::uint32_t>(vcpus_.size())); }

Result<Vcpu*> Vm::add_vcpu(std::uint32_t id) {
  UniqueFd fd(::ioctl(this->fd(), KVM_CREATE_VCPU, id));
  if (!fd) {
    const int err = errno;
    return std::unexpected(vm_error(err, "KVM_CREATE_VCPU", fmt::format("vCPU {}", id)));
  }
  void* run = ::mmap(nullptr, kvm().vcpu_mmap_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (run == MAP_FAILED) {
    const int err = errno;
    return std::unexpected(vm_error(err, "mmap kvm_run", fmt::format("vCPU {}", id)));
  }
  MemoryMapping run_mapping(run, kvm().vcpu_mmap_size());
  auto* stack = static_cast<std::byte*>(arena_.allocate(stack_size_, 16));
  if (!stack) return std::unexpected(make_error(ENOMEM, "guest stack", "the arena is full"));
  vcpus_.push_back(std::make_unique<Vcpu>(*this, id, std::move(fd), std::move(run_mapping), stack + stack_size_));
  VFIOLAB_TRY(configure_vcpu(*vcpus_.back()));
  return vcpus_.back().get();
}

Result<void> Vm::configure_vcpu(Vcpu& vcpu) {
  // CPUID: all KVM supports (x2APIC and long mode among it), with this
  // vCPU's APIC ID where CPUID reports one.
  const auto& supported = kvm().supported_cpuid();
  std::vector<std::uint64_t> buffer((sizeof(kvm_cpuid2) + supported.size() * sizeof(kvm_cpuid_entry2)) / 8 + 1);
  auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buffer.data());
  cpuid->nent = static_cast<std::uint32_t>(supported.size());
  std::copy(supported.begin(), supported.end(), cpuid->entries);
  for (std::uint32_t i = 0; i < cpuid->nent; ++i) {
    auto& entry = cpuid->entries[i];
    if (entry.function == 1) entry.ebx = (entry.ebx & 0x00ffffff) | (vcpu.id() << 24);
    if (entry.function == 0xb || entry.function == 0x1f) entry.edx = vcpu.id();
  }
  if (::ioctl(vcpu.fd(), KVM_SET_CPUID2, cpuid) != 0) {
    const int err = errno;
    return std::unexpected(vm_error(err, "KVM_SET_CPUID2", fmt::format("vCPU {}", vcpu.id())));
  }

  VFIOLAB_ASSIGN_OR_RETURN(kvm_sregs sregs, vcpu.sregs());
  sregs.cr0 = x86::kCr0Pe | x86::kCr0Mp | x86::kCr0Et | x86::kCr0Ne | x86::kCr0Wp | x86::kCr0Pg;
  sregs.cr4 = x86::kCr4Pae;
  sregs.cr3 = gpa_of(pml4_);
  sregs.efer = x86::kEferLme | x86::kEferLma;
  sregs.cs = code_segment();
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data_segment();
  sregs.gdt.base = reinterpret_cast<std::uint64_t>(gdt_);
  sregs.gdt.limit = kGdtEntries * 8 - 1;
  sregs.idt.base = reinterpret_cast<std::uint64_t>(idt_);
  sregs.idt.limit = 256 * 16 - 1;
  kvm_segment tr{};
  tr.base = reinterpret_cast<std::uint64_t>(tss_);
  tr.limit = kTssSize - 1;
  tr.selector = kTssSelector;
  tr.type = 0xb;  // busy 64-bit TSS
  tr.present = 1;
  sregs.tr = tr;
  VFIOLAB_TRY(vcpu.set_sregs(sregs));
  // With the in-kernel APIC, KVM holds every vCPU but the first until an
  // INIT-SIPI; these vCPUs are set up already, so all of them run.
  return vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE);
}

Result<void> Vm::set_msi_route(std::uint32_t gsi, const x86::MsiMessage& message) {
  VFIOLAB_TRY(kvm().require(KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"));
  auto routes = msi_routes_;
  routes[gsi] = message;
  const std::size_t bytes = sizeof(kvm_irq_routing) + routes.size() * sizeof(kvm_irq_routing_entry);
  std::vector<std::uint64_t> buffer(bytes / 8 + 1);
  auto* routing = reinterpret_cast<kvm_irq_routing*>(buffer.data());
  routing->nr = static_cast<std::uint32_t>(routes.size());
  std::uint32_t i = 0;
  for (const auto& [route_gsi, msi] : routes) {
    kvm_irq_routing_entry& entry = routing->entries[i++];
    entry.gsi = route_gsi;
    entry.type = KVM_IRQ_ROUTING_MSI;
    entry.u.msi.address_lo = static_cast<std::uint32_t>(msi.address);
    entry.u.msi.address_hi = static_cast<std::uint32_t>(msi.address >> 32);
    entry.u.msi.data = msi.data;
  }
  if (::ioctl(fd(), KVM_SET_GSI_ROUTING, routing) != 0) {
    const int err = errno;
    return std::unexpected(vm_error(err, "KVM_SET_GSI_ROUTING", fmt::format("GSI {} address {:#x} data {:#x}", gsi,
                                                                       message.address, message.data)));
  }
  msi_routes_ = std::move(routes);
  return {};
}

Result<void> Vm::clear_routes() {
  VFIOLAB_TRY(kvm().require(KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"));
  kvm_irq_routing empty{};
  if (::ioctl(fd(), KVM_SET_GSI_ROUTING, &empty) != 0) {
    const int err = errno;
    return std::unexpected(vm_error(err, "KVM_SET_GSI_ROUTING", "no entries"));
  }
  msi_routes_.clear();
  return {};
}

Result<void> Vm::assign_irqfd(std::uint32_t gsi, int eventfd) {
  VFIOLAB_TRY(kvm().require(KVM_CAP_IRQFD, "KVM_CAP_IRQFD"));
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<std::uint32_t>(eventfd);
  irqfd.gsi = gsi;
  if (::ioctl(fd(), KVM_IRQFD, &irqfd) != 0) {
    const int err = errno;
    return std::unexpected(vm_error(err, "KVM_IRQFD", fmt::format("GSI {} eventfd {}", gsi, eventfd)));
  }
  return {};
}

Result<void> Vm::deassign_irqfd(std::uint32_t gsi, int eventfd) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<std::uint32_t>(eventfd);
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  if (::ioctl(fd(), KVM_IRQFD, &irqfd) != 0) {
    const int err = errno;
    return std::unexpected(vm_error(err, "KVM_IRQFD deassign", fmt::format("GSI {} eventfd {}", gsi, eventfd)));
  }
  return {};
}

Result<void> Vm::signal_msi(const x86::MsiMessage& message) {
  VFIOLAB_TRY(kvm().require(KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI"));
  kvm_msi msi{};
  msi.address_lo = static_cast<std::uint32_t>(message.address);
  msi.address_hi = static_cast<std::uint32_t>(message.address >> 32);
  msi.data = message.data;
  // Returns how many APICs took it: 0 means none did (none matched, or the
  // interrupt was blocked).
  const int delivered = ::ioctl(fd(), KVM_SIGNAL_MSI, &msi);
  if (delivered < 0) {
    const int err = errno;
    return std::unexpected(vm_error(err, "KVM_SIGNAL_MSI", fmt::format("address {:#x} data {:#x}", message.address, message.data)));
  }
  if (delivered == 0) {
    return std::unexpected(make_error(0, "KVM_SIGNAL_MSI", fmt::format("address {:#x} data {:#x}: no APIC took it", message.address, message.data)));
  }
  return {};
}

// ---- Vcpu

Error Vcpu::vcpu_error(int err, std::string operation) const {
  return make_error(err, std::move(operation), fmt::format("vCPU {}", id_));
}

Result<void> Vcpu::start(GuestFunction function, void* argument) {
  kvm_regs regs{};
  regs.rip = reinterpret_cast<std::uint64_t>(vfiolab_kvm_guest_start);
  regs.rdi = reinterpret_cast<std::uint64_t>(function);
  regs.rsi = reinterpret_cast<std::uint64_t>(argument);
  regs.rsp = reinterpret_cast<std::uint64_t>(stack_top_);
  regs.rflags = x86::kRflagsFixed;
  return set_regs(regs);
}

Result<Ucall> Vcpu::run() {
  for (;;) {
    if (::ioctl(fd(), KVM_RUN, 0) != 0) {
      const int err = errno;
      if (err == EINTR || err == EAGAIN) continue;
      return std::unexpected(vcpu_error(err, "KVM_RUN"));
    }
    const kvm_run& state = *run_state();
    if (state.exit_reason == KVM_EXIT_INTR) continue;
    if (state.exit_reason == KVM_EXIT_IO && state.io.port == kUcallPort && state.io.direction == KVM_EXIT_IO_OUT) {
      VFIOLAB_ASSIGN_OR_RETURN(const kvm_regs registers, regs());
      const auto* call = reinterpret_cast<const Ucall*>(registers.rdi);
      if (!vm_.in_guest_memory(call, sizeof(Ucall))) {
        return std::unexpected(make_error(EFAULT, "ucall", fmt::format("vCPU {}: RDI {:#x} is not guest memory", id_, registers.rdi)));
      }
      Ucall copy = *call;
      if (copy.file && !vm_.in_guest_memory(copy.file, 1)) copy.file = nullptr;
      if (copy.text && !vm_.in_guest_memory(copy.text, 1)) copy.text = nullptr;
      return copy;
    }
    return std::unexpected(exit_error(state));
  }
}

Error Vcpu::exit_error(const kvm_run& state) const {
  std::string detail;
  switch (state.exit_reason) {
    case KVM_EXIT_SHUTDOWN: detail = "the guest shut down (a triple fault)"; break;
    case KVM_EXIT_IO:
      detail = fmt::format("{} of port {:#x}", state.io.direction == KVM_EXIT_IO_OUT ? "out" : "in", state.io.port);
      break;
    case KVM_EXIT_MMIO:
      detail = fmt::format("MMIO {} of {} bytes at {:#x} (no guest memory there)", state.mmio.is_write ? "write" : "read",
                           state.mmio.len, state.mmio.phys_addr);
      break;
    case KVM_EXIT_FAIL_ENTRY:
      detail = fmt::format("VM entry failed, hardware reason {:#x}", state.fail_entry.hardware_entry_failure_reason);
      break;
    case KVM_EXIT_INTERNAL_ERROR: {
      detail = fmt::format("internal error, suberror {}", state.internal.suberror);
      for (std::uint32_t i = 0; i < std::min<std::uint32_t>(state.internal.ndata, 16); ++i) {
        detail += fmt::format(" {:#x}", state.internal.data[i]);
      }
      break;
    }
    case KVM_EXIT_DEBUG:
      detail = fmt::format("exception {} at pc {:#x}, DR6 {:#x}, DR7 {:#x}", state.debug.arch.exception,
                           state.debug.arch.pc, state.debug.arch.dr6, state.debug.arch.dr7);
      break;
    default: detail = fmt::format("exit reason {}", state.exit_reason); break;
  }
  if (auto registers = regs()) detail += fmt::format(", RIP {:#x}", registers->rip);
  return make_error(0, fmt::format("KVM_RUN vCPU {}: {}", id_, exit_reason_name(state.exit_reason)), detail);
}

Error Vcpu::guest_failure(const Ucall& call) const {
  return make_error(0, fmt::format("guest on vCPU {}", id_),
                    fmt::format("{}:{}: {} (values {:#x}, {:#x}, {:#x})", call.file ? call.file : "?", call.line,
                                call.text ? call.text : "?", call.values[0], call.values[1], call.values[2]));
}

Result<void> Vcpu::run_until_done() {
  for (;;) {
    VFIOLAB_ASSIGN_OR_RETURN(const Ucall call, run());
    switch (call.kind) {
      case UcallKind::done: return {};
      case UcallKind::sync: continue;
      case UcallKind::failure: return std::unexpected(guest_failure(call));
    }
    return std::unexpected(make_error(0, "ucall", fmt::format("vCPU {}: unknown kind {}", id_, static_cast<std::uint32_t>(call.kind))));
  }
}

Result<kvm_debug_exit_arch> Vcpu::run_until_debug_exit() {
  auto call = run();
  if (!call) {
    if (run_state()->exit_reason == KVM_EXIT_DEBUG) return run_state()->debug.arch;
    return std::unexpected(std::move(call.error()));
  }
  switch (call->kind) {
    case UcallKind::failure: return std::unexpected(guest_failure(*call));
    case UcallKind::done:
      return std::unexpected(make_error(0, fmt::format("KVM_RUN vCPU {}", id_), "the guest finished without a KVM_EXIT_DEBUG"));
    case UcallKind::sync: break;
  }
  return std::unexpected(make_error(0, fmt::format("KVM_RUN vCPU {}", id_),
                                    fmt::format("a ucall (kind {}, value {:#x}) instead of a KVM_EXIT_DEBUG",
                                                static_cast<std::uint32_t>(call->kind), call->values[0])));
}

template <typename T>
Result<T> Vcpu::get(unsigned long request, const char* name) const {
  T value{};
  if (::ioctl(fd(), request, &value) != 0) {
    const int err = errno;
    return std::unexpected(vcpu_error(err, name));
  }
  return value;
}

template <typename T>
Result<void> Vcpu::set(unsigned long request, const char* name, const T& value) {
  if (::ioctl(fd(), request, &value) != 0) {
    const int err = errno;
    return std::unexpected(vcpu_error(err, name));
  }
  return {};
}

Result<kvm_regs> Vcpu::regs() const { return get<kvm_regs>(KVM_GET_REGS, "KVM_GET_REGS"); }
Result<void> Vcpu::set_regs(const kvm_regs& regs) { return set(KVM_SET_REGS, "KVM_SET_REGS", regs); }
Result<kvm_sregs> Vcpu::sregs() const { return get<kvm_sregs>(KVM_GET_SREGS, "KVM_GET_SREGS"); }
Result<void> Vcpu::set_sregs(const kvm_sregs& sregs) { return set(KVM_SET_SREGS, "KVM_SET_SREGS", sregs); }

Result<kvm_debugregs> Vcpu::debugregs() const {
  VFIOLAB_TRY(vm_.kvm().require(KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"));
  return get<kvm_debugregs>(KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS");
}

Result<void> Vcpu::set_debugregs(const kvm_debugregs& debugregs) {
  VFIOLAB_TRY(vm_.kvm().require(KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"));
  return set(KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", debugregs);
}

Result<void> Vcpu::set_guest_debug(const kvm_guest_debug& debug) {
  VFIOLAB_TRY(vm_.kvm().require(KVM_CAP_SET_GUEST_DEBUG, "KVM_CAP_SET_GUEST_DEBUG"));
  // KVM_CAP_SET_GUEST_DEBUG2 is the set of control flags this KVM knows.
  if (const int known = vm_.kvm().extension(KVM_CAP_SET_GUEST_DEBUG2); known > 0) {
    if (const std::uint32_t unknown = debug.control & ~static_cast<std::uint32_t>(known)) {
      return std::unexpected(unsupported_error(0, "KVM_SET_GUEST_DEBUG",
                                        fmt::format("vCPU {}: control flags {:#x} are not in KVM_CAP_SET_GUEST_DEBUG2 ({:#x})",
                                                    id_, unknown, known)));
    }
  }
  return set(KVM_SET_GUEST_DEBUG, "KVM_SET_GUEST_DEBUG", debug);
}

Result<std::uint32_t> Vcpu::mp_state() const {
  VFIOLAB_ASSIGN_OR_RETURN(const kvm_mp_state state, get<kvm_mp_state>(KVM_GET_MP_STATE, "KVM_GET_MP_STATE"));
  return state.mp_state;
}

Result<void> Vcpu::set_mp_state(std::uint32_t state) {
  kvm_mp_state mp{};
  mp.mp_state = state;
  return set(KVM_SET_MP_STATE, "KVM_SET_MP_STATE", mp);
}

Result<std::uint64_t> Vcpu::msr(std::uint32_t index) const {
  std::vector<std::uint64_t> buffer((sizeof(kvm_msrs) + sizeof(kvm_msr_entry)) / 8 + 1);
  auto* msrs = reinterpret_cast<kvm_msrs*>(buffer.data());
  msrs->nmsrs = 1;
  msrs->entries[0].index = index;
  const int read = ::ioctl(fd(), KVM_GET_MSRS, msrs);
  if (read < 0) {
    const int err = errno;
    return std::unexpected(vcpu_error(err, fmt::format("KVM_GET_MSRS {:#x}", index)));
  }
  // KVM_GET_MSRS answers with how many it read: 0 for an MSR it does not know.
  if (read != 1) return std::unexpected(make_error(ENOENT, fmt::format("KVM_GET_MSRS {:#x}", index), "KVM does not support this MSR"));
  return msrs->entries[0].data;
}

Result<void> Vcpu::set_tsc_offset(std::int64_t offset) {
  VFIOLAB_TRY(vm_.kvm().require(KVM_CAP_VCPU_ATTRIBUTES, "KVM_CAP_VCPU_ATTRIBUTES"));
  kvm_device_attr attr{};
  attr.group = KVM_VCPU_TSC_CTRL;
  attr.attr = KVM_VCPU_TSC_OFFSET;
  attr.addr = reinterpret_cast<std::uint64_t>(&offset);
  if (::ioctl(fd(), KVM_HAS_DEVICE_ATTR, &attr) != 0) {
    const int err = errno;
    return std::unexpected(unsupported_error(err, "KVM_HAS_DEVICE_ATTR", "this KVM has no KVM_VCPU_TSC_OFFSET"));
  }
  if (::ioctl(fd(), KVM_SET_DEVICE_ATTR, &attr) != 0) {
    const int err = errno;
    return std::unexpected(vcpu_error(err, "KVM_SET_DEVICE_ATTR KVM_VCPU_TSC_OFFSET"));
  }
  return {};
}

}  // namespace vfiolab::kvm
