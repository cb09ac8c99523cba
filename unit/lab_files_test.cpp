#include "files.h"

#include <gtest/gtest.h>

namespace vfiolab::lab {
namespace {

TEST(DecodeBase64, DecodesWhatCoreutilsWrites) {
  // `printf 'vfiolab\n' | base64` and the padded tails of 1 and 2 bytes.
  EXPECT_EQ(decode_base64("dmZpb2xhYgo="), "vfiolab\n");
  EXPECT_EQ(decode_base64("YQ=="), "a");
  EXPECT_EQ(decode_base64("YWI="), "ab");
  EXPECT_EQ(decode_base64("YWJj"), "abc");
  EXPECT_EQ(decode_base64(""), "");
  // Line breaks fall anywhere, as base64's 76-column lines put them.
  EXPECT_EQ(decode_base64("YW\nJj\r\nZA=\n=\n"), "abcd");
  const std::string all = [] {
    std::string bytes;
    for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
    return bytes;
  }();
  // The bytes 0..255 as coreutils' base64 writes them (lines of 76).
  EXPECT_EQ(decode_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\n"
                          "OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3Bx\n"
                          "cnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmq\n"
                          "q6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj\n"
                          "5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==\n"),
            all);
}

TEST(DecodeBase64, RefusesDamage) {
  EXPECT_FALSE(decode_base64("YWJ"));        // a group cut short
  EXPECT_FALSE(decode_base64("YW*j"));       // not in the alphabet
  EXPECT_FALSE(decode_base64("Y==="));       // padding too early
  EXPECT_FALSE(decode_base64("YW=j"));       // data after padding in a group
  EXPECT_FALSE(decode_base64("YQ==YWJj"));   // data after the padded end
  EXPECT_FALSE(decode_base64("YQ==\n="));
}

TEST(ParseSentFiles, FilesInOrderWithTheirBytes) {
  const auto files = parse_sent_files(
      "boot noise\n"
      "vfiolab-file-begin perf.json\nYWJj\nZA==\nvfiolab-file-end\n"
      "vfiolab-file-begin sub/dir/log\r\n\r\nvfiolab-file-end\r\n");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].name, "perf.json");
  EXPECT_EQ(files[0].bytes, "abcd");
  EXPECT_FALSE(files[0].truncated);
  // A name cannot leave the folder it is received into; an empty file is whole.
  EXPECT_EQ(files[1].name, "sub_dir_log");
  EXPECT_EQ(files[1].bytes, "");
}

TEST(ParseSentFiles, NamesDamagedAndTruncatedFiles) {
  const auto files = parse_sent_files(
      "vfiolab-file-begin damaged\nYW*j\nvfiolab-file-end\n"
      "vfiolab-file-begin cut-by-next\nYWJj\n"
      "vfiolab-file-begin cut-by-end\nYWJj\nZA");
  ASSERT_EQ(files.size(), 3u);
  EXPECT_FALSE(files[0].bytes);
  EXPECT_FALSE(files[0].truncated);
  EXPECT_TRUE(files[1].truncated);
  EXPECT_FALSE(files[1].bytes);
  EXPECT_EQ(files[1].base64, "YWJj");
  EXPECT_TRUE(files[2].truncated);
  EXPECT_EQ(files[2].base64, "YWJj\nZA");
  EXPECT_TRUE(parse_sent_files("no file here\n").empty());
}

}  // namespace
}  // namespace vfiolab::lab
