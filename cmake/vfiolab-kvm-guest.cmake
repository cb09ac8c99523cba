# vfiolab_kvm_guest_sources(FILE...): build these sources as KVM guest code
# (see vfiolab/kvm/guest.h): no SSE state to save in the interrupt stubs, no
# red zone under the interrupt frames, no stack protector's TLS, no calls
# into libc the compiler would make up.
function(vfiolab_kvm_guest_sources)
  set_source_files_properties(${ARGN} PROPERTIES
    COMPILE_OPTIONS "-mgeneral-regs-only;-mno-red-zone;-fno-stack-protector;-fno-sanitize=all;-fno-tree-loop-distribute-patterns;-fno-exceptions;-fno-asynchronous-unwind-tables"
    COMPILE_DEFINITIONS VFIOLAB_KVM_GUEST_CODE)
endfunction()
