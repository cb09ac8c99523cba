// A program built with pkg-config against the installed vfiolab (and run on
// the host, no device needed): parses a device address and a VF token.
//   g++ -std=gnu++2b bdf_and_token.cpp $(pkg-config --cflags --libs vfiolab)
#include "vfiolab/sysfs.h"
#include "vfiolab/vf_token.h"

#include <fmt/format.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fmt::print(stderr, "usage: {} BDF VF_TOKEN\n", argv[0]);
    return 2;
  }
  auto bdf = vfiolab::parse_bdf(argv[1]);
  auto token = vfiolab::VfToken::parse(argv[2]);
  if (!bdf || !token) {
    fmt::print(stderr, "{}\n", !bdf ? bdf.error().message() : token.error().message());
    return 1;
  }
  fmt::print("{} {}\n", bdf->str(), token->str());
  return 0;
}
