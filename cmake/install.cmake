# What `cmake --install` puts where (GNUInstallDirs), by component:
#   guest        the programs that run in the lab's guest (bin/): the suite,
#                vfio-setup, vfiolab-probe, the plan runner. scripts/build.sh
#                stages this component alone; lab/run copies all of it into
#                the initramfs.
#   lab          the lab runner (bin/vfiolab-lab), its scripts, plans, kernel
#                fragment and guest init (share/vfiolab/lab/), the report
#                tool (libexec/vfiolab/)
#   runtime      libvfiolab.so.N
#   development  headers, the uAPI headers vfiolab was built against,
#                libraries, the CMake package and vfiolab.pc
#   doc          man pages
#   bench        the host benchmarks (libexec/vfiolab/)
include(CMakePackageConfigHelpers)

set(VFIOLAB_LAB_DATADIR ${CMAKE_INSTALL_DATADIR}/vfiolab/lab)
set(VFIOLAB_LIBEXECDIR ${CMAKE_INSTALL_LIBEXECDIR}/vfiolab)
set(VFIOLAB_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/vfiolab)

# vfiolab_install_guest_program(TARGET): a program for the lab's guest.
function(vfiolab_install_guest_program target)
  install(TARGETS ${target} DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT guest)
  set_property(GLOBAL APPEND PROPERTY VFIOLAB_GUEST_PROGRAMS "$<TARGET_FILE_NAME:${target}>")
endfunction()

# vfiolab_install_guest_script(FILE NAME): a script for the lab's guest, as NAME.
function(vfiolab_install_guest_script file name)
  install(PROGRAMS ${file} DESTINATION ${CMAKE_INSTALL_BINDIR} RENAME ${name} COMPONENT guest)
  set_property(GLOBAL APPEND PROPERTY VFIOLAB_GUEST_PROGRAMS ${name})
endfunction()

# vfiolab_path_from(VARIABLE FROM TO): TO relative to FROM, both install
# directories, so installed files find each other under any --prefix.
function(vfiolab_path_from variable from to)
  file(RELATIVE_PATH relative "/${from}" "/${to}")
  set(${variable} ${relative} PARENT_SCOPE)
endfunction()

# Called last, once every target exists.
function(vfiolab_install_package)
  set(libraries vfiolab vfiolab-shared vfiolab-report vfiolab-drivers vfiolab-kvm
    vfiolab-harness vfiolab-harness-selection)
  install(TARGETS ${libraries} EXPORT vfiolab-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT development)
  install(EXPORT vfiolab-targets NAMESPACE vfiolab:: DESTINATION ${VFIOLAB_CMAKEDIR} COMPONENT development)

  install(DIRECTORY include/vfiolab report/include/vfiolab drivers/include/vfiolab kvm/include/vfiolab
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)
  install(FILES harness/harness.h harness/check.h harness/device.h harness/scope_exit.h
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vfiolab/harness COMPONENT development)
  # The public headers use the kernel's uAPI (linux/vfio.h, linux/iommufd.h,
  # linux/kvm.h) of the kernel vfiolab was built against, newer than Debian's
  # linux-libc-dev: they go with the package, and its users compile against
  # them (vfiolab-config.cmake, vfiolab.pc).
  option(VFIOLAB_INSTALL_UAPI "Install the uAPI headers vfiolab was built against" ON)
  if(VFIOLAB_INSTALL_UAPI)
    install(DIRECTORY ${VFIOLAB_UAPI_INCLUDE}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vfiolab/uapi
      COMPONENT development)
  endif()

  install(FILES cmake/vfiolab-kvm-guest.cmake DESTINATION ${VFIOLAB_CMAKEDIR} COMPONENT development)
  configure_package_config_file(cmake/vfiolab-config.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/vfiolab-config.cmake INSTALL_DESTINATION ${VFIOLAB_CMAKEDIR})
  write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/vfiolab-config-version.cmake
    COMPATIBILITY SameMinorVersion)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/vfiolab-config.cmake
    ${CMAKE_CURRENT_BINARY_DIR}/vfiolab-config-version.cmake
    DESTINATION ${VFIOLAB_CMAKEDIR} COMPONENT development)

  set(pkgconfig_dir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
  vfiolab_path_from(VFIOLAB_PC_PREFIX ${pkgconfig_dir} "")
  string(REGEX REPLACE "/$" "" VFIOLAB_PC_PREFIX "${VFIOLAB_PC_PREFIX}")
  configure_file(cmake/vfiolab.pc.in ${CMAKE_CURRENT_BINARY_DIR}/vfiolab.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/vfiolab.pc DESTINATION ${pkgconfig_dir} COMPONENT development)

  # The lab, installed: its scripts and data in share/, found by the
  # vfiolab-lab wrapper; lab/run learns from installed.conf where the
  # programs and the report tool are, and that it builds nothing.
  install(PROGRAMS lab/run lab/common.sh lab/kernel.sh lab/initramfs.sh lab/qemu.sh
    lab/kernel-source.sh lab/shard.sh DESTINATION ${VFIOLAB_LAB_DATADIR} COMPONENT lab)
  install(FILES lab/kernel.config lab/kernel-debug.config lab/kselftest-compat.h lab/suite.plan lab/quick.plan lab/faults.plan
    lab/suite.seconds lab/quick.seconds lab/faults.seconds
    lab/kernel-selftests.plan DESTINATION ${VFIOLAB_LAB_DATADIR} COMPONENT lab)
  install(PROGRAMS lab/guest/init DESTINATION ${VFIOLAB_LAB_DATADIR}/guest COMPONENT lab)
  install(PROGRAMS lab/lava DESTINATION ${VFIOLAB_LAB_DATADIR} COMPONENT lab)
  install(PROGRAMS lab/lava.d/lava.py lab/lava.d/submit.py lab/lava.d/server.sh
    DESTINATION ${VFIOLAB_LAB_DATADIR}/lava.d COMPONENT lab)
  install(FILES lab/lava.d/vfiolab-qemu.jinja2 DESTINATION ${VFIOLAB_LAB_DATADIR}/lava.d COMPONENT lab)
  install(DIRECTORY lab/lanes DESTINATION ${VFIOLAB_LAB_DATADIR} COMPONENT lab)
  get_property(guest_programs GLOBAL PROPERTY VFIOLAB_GUEST_PROGRAMS)
  file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/guest-programs
    CONTENT "$<JOIN:${guest_programs},\n>\n")
  vfiolab_path_from(VFIOLAB_LAB_TO_BIN ${VFIOLAB_LAB_DATADIR} ${CMAKE_INSTALL_BINDIR})
  vfiolab_path_from(VFIOLAB_LAB_TO_LIBEXEC ${VFIOLAB_LAB_DATADIR} ${VFIOLAB_LIBEXECDIR})
  configure_file(cmake/lab-installed.conf.in ${CMAKE_CURRENT_BINARY_DIR}/installed.conf @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/guest-programs ${CMAKE_CURRENT_BINARY_DIR}/installed.conf
    DESTINATION ${VFIOLAB_LAB_DATADIR} COMPONENT lab)
  vfiolab_path_from(VFIOLAB_BIN_TO_LAB ${CMAKE_INSTALL_BINDIR} ${VFIOLAB_LAB_DATADIR})
  configure_file(cmake/vfiolab-lab.in ${CMAKE_CURRENT_BINARY_DIR}/vfiolab-lab @ONLY)
  install(PROGRAMS ${CMAKE_CURRENT_BINARY_DIR}/vfiolab-lab DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT lab)
endfunction()
