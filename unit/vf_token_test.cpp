#include "check.h"
#include "vfiolab/vf_token.h"

#include <gtest/gtest.h>

namespace vfiolab {
namespace {

TEST(VfToken, BytesInTextOrder) {
  // The kernel's uuid_parse() stores a uuid_t byte for byte as the text
  // reads, unlike a guid_t: the first byte is the first two digits.
  auto token = check(VfToken::parse("52ac9bff-3a88-4fbd-901a-0d767c3b6c97"));
  const std::array<std::uint8_t, 16> expected = {0x52, 0xac, 0x9b, 0xff, 0x3a, 0x88, 0x4f, 0xbd,
                                                 0x90, 0x1a, 0x0d, 0x76, 0x7c, 0x3b, 0x6c, 0x97};
  EXPECT_EQ(token.bytes, expected);
  EXPECT_EQ(token.str(), "52ac9bff-3a88-4fbd-901a-0d767c3b6c97");
}

TEST(VfToken, UpperCaseReadsAndPrintsLower) {
  auto token = check(VfToken::parse("88594674-90A0-47A9-AEA8-9D9B352AC08A"));
  EXPECT_EQ(token.str(), "88594674-90a0-47a9-aea8-9d9b352ac08a");
  EXPECT_NE(token, check(VfToken::parse("52ac9bff-3a88-4fbd-901a-0d767c3b6c97")));
}

TEST(VfToken, BadTextIsNamed) {
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"", "0 characters, not 36"},
           {"52ac9bff-3a88-4fbd-901a-0d767c3b6c9", "35 characters"},
           {"52ac9bff-3a88-4fbd-901a-0d767c3b6c977", "37 characters"},
           {"52ac9bff+3a88-4fbd-901a-0d767c3b6c97", "'-' expected at 8"},
           {"52ac9bff-3a88-4fbd-901a-0d767c3b6cg7", "'g' at 34 is not a hex digit"},
           {"52ac9bff3a88-4fbd-901a-0d767c3b6c97-", "'-' expected at 8"},
       }) {
    auto token = VfToken::parse(text);
    ASSERT_FALSE(token) << text;
    EXPECT_NE(token.error().message().find(why), std::string::npos) << token.error().message();
    EXPECT_NE(token.error().message().find("is no UUID"), std::string::npos);
  }
}

}  // namespace
}  // namespace vfiolab
