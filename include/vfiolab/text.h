// Reading the line-and-word text formats vfiolab parses: KTAP, the lab's
// plan and its expectations files; and the values on a program's command
// line.
#pragma once

#include "vfiolab/error.h"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace vfiolab::text {

// `text` without the whitespace (std::isspace) at either end.
std::string_view trim(std::string_view text);

// The next whitespace-separated word of `text`, consumed from it (with the
// whitespace before it); empty when none is left.
std::string_view next_word(std::string_view& text);

// A whole file's bytes; the error names the file and carries the errno.
Result<std::string> read_file(const std::filesystem::path& file);
// read_file(), or nothing when the file does not exist (ENOENT); any other
// failure is still an error, never "absent".
Result<std::optional<std::string>> read_file_if_present(const std::filesystem::path& file);

// Command-line values, for every program (test programs, the probe, the
// plan runner, vfio-setup: all link this library). Each error's message is
// the whole sentence naming the option, e.g. "-T needs a value", for the
// program to print and exit FAIL with (ktap::kExitFail).
//
// The word after the option argv[at], with `at` moved onto it.
Result<std::string_view> option_value(int argc, char* const* argv, int& at);
// `text`, given to `option`, as a whole positive decimal number; else
// "OPTION wants a positive whole number[ of UNIT], not 'TEXT'".
Result<unsigned long> positive_number(std::string_view option, std::string_view text, std::string_view unit = {});

}  // namespace vfiolab::text
