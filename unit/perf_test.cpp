// The performance programs' arithmetic and output: percentiles, the JSON
// schema, sizes and the table.
#include "vfiolab/perf.h"

#include <fmt/format.h>

#include <gtest/gtest.h>

namespace vfiolab::perf {
namespace {

TEST(PerfSummary, PercentilesInterpolateBetweenRanks) {
  const Summary s = summarize({10, 1, 9, 2, 8, 3, 7, 4, 6, 5, 11});  // 1..11 shuffled
  EXPECT_EQ(s.iterations, 11u);
  EXPECT_DOUBLE_EQ(s.median, 6);
  EXPECT_DOUBLE_EQ(s.p10, 2);
  EXPECT_DOUBLE_EQ(s.p90, 10);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 11);
  const Summary even = summarize({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(even.median, 2.5);
  EXPECT_DOUBLE_EQ(even.p10, 1.3);
  EXPECT_DOUBLE_EQ(even.p90, 3.7);
}

TEST(PerfSummary, OneAndNoSamples) {
  const Summary one = summarize({42});
  EXPECT_DOUBLE_EQ(one.median, 42);
  EXPECT_DOUBLE_EQ(one.p10, 42);
  EXPECT_DOUBLE_EQ(one.p90, 42);
  const Summary none = summarize({});
  EXPECT_EQ(none.iterations, 0u);
  EXPECT_DOUBLE_EQ(none.median, 0);
}

TEST(PerfJson, EscapesStrings) {
  EXPECT_EQ(json_escape("a\"b\\c\nd\te\x01"), "a\\\"b\\\\c\\nd\\te\\u0001");
}

TEST(PerfJson, SchemaAndRecordFields) {
  Report report{"prog", "0000:00:04.0", "6.12.0", {}};
  report.records.push_back({"map", "iommufd", "anonymous", 4096, summarize({1, 2, 3}), "us",
                            {{"api", "raw"}, {"prefault", "no"}}});
  EXPECT_EQ(to_json(report),
            "{\n"
            "  \"schema\": \"vfiolab-perf/1\",\n"
            "  \"program\": \"prog\",\n"
            "  \"device\": \"0000:00:04.0\",\n"
            "  \"kernel\": \"6.12.0\",\n"
            "  \"records\": [\n"
            "    {\"test\": \"map\", \"mode\": \"iommufd\", \"backing\": \"anonymous\", \"size\": 4096, "
            "\"iterations\": 3, \"median\": 2, \"p10\": 1.2, \"p90\": 2.8, \"min\": 1, \"max\": 3, \"unit\": \"us\", "
            "\"labels\": {\"api\": \"raw\", \"prefault\": \"no\"}}\n"
            "  ]\n"
            "}\n");
}

TEST(PerfJson, EmptyReportIsValid) {
  Report report{"p", "", "k", {}};
  EXPECT_NE(to_json(report).find("\"records\": []\n}"), std::string::npos) << to_json(report);
}

TEST(PerfSizes, NamesAndParsing) {
  EXPECT_EQ(size_name(4096), "4K");
  EXPECT_EQ(size_name(2 << 20), "2M");
  EXPECT_EQ(size_name(1ull << 30), "1G");
  EXPECT_EQ(size_name(4095), "4095");
  EXPECT_EQ(size_name(0), "-");
  EXPECT_EQ(parse_size("64k"), 65536u);
  EXPECT_EQ(parse_size("1G"), 1ull << 30);
  EXPECT_EQ(parse_size("4096"), 4096u);
  for (const char* bad : {"", "K", "0", "12X", "-4K", "99999999999999999999", "17179869184G"}) {
    const auto size = parse_size(bad);
    ASSERT_FALSE(size) << bad;
    EXPECT_EQ(size.error().errnum, EINVAL);
    EXPECT_NE(size.error().message().find(fmt::format("'{}'", bad)), std::string::npos) << size.error().message();
  }
}

TEST(PerfTable, ColumnsLineUp) {
  std::vector<Record> records{{"map", "iommufd", "anonymous", 4096, summarize({1.5}), "us", {{"api", "raw"}}},
                              {"unmap_long_name", "vfio_type1_iommu", "memfd", 1ull << 30, summarize({1234.5}), "us", {}}};
  const std::string table = format_table(records);
  EXPECT_EQ(table,
            "test             labels   mode              backing    size  iter   median      p10      p90  unit\n"
            "map              api=raw  iommufd           anonymous    4K     1     1.50     1.50     1.50  us\n"
            "unmap_long_name           vfio_type1_iommu  memfd        1G     1  1234.50  1234.50  1234.50  us\n");
}

}  // namespace
}  // namespace vfiolab::perf
