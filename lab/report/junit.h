// JUnit XML for CI systems: one testsuite per lab program, one testcase per
// leaf test, and a "kernel-log" suite with one failing testcase per kernel
// report.
#pragma once

#include "vfiolab/kernel_log.h"
#include "vfiolab/ktap.h"

#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::lab {

std::string xml_escape(std::string_view text);

std::string junit_xml(const ktap::Document& document, const std::vector<kernel_log::Finding>& findings,
                      const std::vector<std::string>& notes);

}  // namespace vfiolab::lab
