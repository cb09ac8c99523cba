// Reading the line-and-word text formats vfiolab parses: KTAP, the lab's
// plan and its expectations files.
#pragma once

#include "vfiolab/error.h"

#include <filesystem>
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

}  // namespace vfiolab::text
