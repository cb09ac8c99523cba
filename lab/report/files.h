// The files a lab guest sends back when its programs are done
// (lab/guest/init, send_files): on the guest's third serial port, each file
// as a line "vfiolab-file-begin NAME", its bytes in base64 (coreutils'
// base64: lines of 76 characters), and a line "vfiolab-file-end". The port
// is a plain byte stream, so a guest that stopped half-way leaves a file
// without its end line, and a line the port lost leaves one that does not
// decode: both are named, never written out as if whole.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiolab::lab {

// RFC 4648 base64 (the standard alphabet, '=' padding); line breaks and
// other white space are skipped. Nothing for a character outside the
// alphabet, padding that is not at the end, or a length that is no whole
// number of 4-character groups.
std::optional<std::string> decode_base64(std::string_view text);

struct SentFile {
  // The name the guest gave, with '/' made '_' so that it names a file in
  // the folder it is received into, never one elsewhere.
  std::string name;
  std::string base64;                // the encoded lines, joined with '\n'
  std::optional<std::string> bytes;  // decoded; nothing when damaged or truncated
  bool truncated = false;            // the stream ended (or the next file began) before its end line
};

// Every file in the stream, in the order sent. Lines outside a file (the
// port's own noise) are passed over.
std::vector<SentFile> parse_sent_files(std::string_view stream);

}  // namespace vfiolab::lab
