// The command-line helpers every program uses: an option's value and a
// positive number, refused with a message naming the option.
#include "vfiolab/text.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>

namespace vfiolab::text {
namespace {

TEST(PositiveNumber, TakesWholePositiveDecimals) {
  EXPECT_EQ(positive_number("-T", "1"), 1ul);
  EXPECT_EQ(positive_number("-T", "900"), 900ul);
  EXPECT_EQ(positive_number("-T", "007"), 7ul);
}

TEST(PositiveNumber, RefusesTheRestNamingTheOption) {
  for (const char* bad : {"", "0", "-1", "+1", "5x", " 5", "5 ", "0x10", "1.5", "99999999999999999999999"}) {
    const auto number = positive_number("--jobs", bad);
    ASSERT_FALSE(number) << bad;
    EXPECT_EQ(number.error().message(), fmt::format("--jobs wants a positive whole number, not '{}'", bad));
  }
  EXPECT_EQ(positive_number("-T", "x", "seconds").error().message(),
            "-T wants a positive whole number of seconds, not 'x'");
}

TEST(OptionValue, TakesTheNextWordAndMovesOntoIt) {
  std::array<char*, 3> argv{const_cast<char*>("prog"), const_cast<char*>("-m"), const_cast<char*>("iommufd")};
  int at = 1;
  const auto value = option_value(static_cast<int>(argv.size()), argv.data(), at);
  ASSERT_TRUE(value) << value.error();
  EXPECT_EQ(*value, "iommufd");
  EXPECT_EQ(at, 2);
}

TEST(OptionValue, RefusesAMissingValueNamingTheOption) {
  std::array<char*, 2> argv{const_cast<char*>("prog"), const_cast<char*>("--json")};
  int at = 1;
  const auto value = option_value(static_cast<int>(argv.size()), argv.data(), at);
  ASSERT_FALSE(value);
  EXPECT_EQ(value.error().message(), "--json needs a value");
  EXPECT_EQ(at, 1);
}

}  // namespace
}  // namespace vfiolab::text
