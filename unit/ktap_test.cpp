#include "vfiolab/ktap.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

namespace vfiolab::ktap {
namespace {

TEST(KtapResultLine, PlainPassAndFail) {
  auto ok = parse_result_line("ok 1 my_test");
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->ok);
  EXPECT_EQ(ok->number, 1);
  EXPECT_EQ(ok->name, "my_test");
  EXPECT_EQ(ok->directive, Directive::none);

  auto bad = parse_result_line("not ok 12 - other test");
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->ok);
  EXPECT_EQ(bad->number, 12);
  EXPECT_EQ(bad->name, "other test");
}

TEST(KtapResultLine, Directives) {
  auto skip = parse_result_line("ok 3 fixture.variant.test # SKIP no 1 GiB hugepages");
  ASSERT_TRUE(skip);
  EXPECT_EQ(skip->directive, Directive::skip);
  EXPECT_EQ(skip->reason, "no 1 GiB hugepages");

  auto lower = parse_result_line("ok 4 t # skip");
  ASSERT_TRUE(lower);
  EXPECT_EQ(lower->directive, Directive::skip);
  EXPECT_EQ(lower->reason, "");

  EXPECT_EQ(parse_result_line("not ok 5 t # TODO not yet")->directive, Directive::todo);
  EXPECT_EQ(parse_result_line("not ok 6 t # XFAIL expected")->directive, Directive::xfail);
  EXPECT_EQ(parse_result_line("not ok 7 t # TIMEOUT")->directive, Directive::timeout);
  EXPECT_EQ(parse_result_line("not ok 8 t # ERROR")->directive, Directive::error);

  auto comment = parse_result_line("ok 9 t # just a note");
  ASSERT_TRUE(comment);
  EXPECT_EQ(comment->directive, Directive::none);
  EXPECT_EQ(comment->reason, "just a note");

  auto nameless = parse_result_line("ok 10 # SKIP whole program");
  ASSERT_TRUE(nameless);
  EXPECT_EQ(nameless->name, "");
  EXPECT_EQ(nameless->directive, Directive::skip);
}

TEST(KtapResultLine, NotResults) {
  EXPECT_FALSE(parse_result_line("okay 1 x"));
  EXPECT_FALSE(parse_result_line("# ok 1 x"));
  EXPECT_FALSE(parse_result_line("not okay"));
  EXPECT_FALSE(parse_result_line("ok1 x"));
  EXPECT_FALSE(parse_result_line("ok 12abc x"));
  EXPECT_FALSE(parse_result_line(""));
}

TEST(KtapResultLine, MissingNumberStillParses) {
  auto line = parse_result_line("ok name only");
  ASSERT_TRUE(line);
  EXPECT_FALSE(line->number);
  EXPECT_EQ(line->name, "name only");
}

TEST(KtapOutcome, DirectivesDecideHowAResultCounts) {
  Result r;
  r.ok = false;
  r.directive = Directive::xfail;
  EXPECT_EQ(outcome(r), Outcome::pass);
  r.directive = Directive::todo;
  EXPECT_EQ(outcome(r), Outcome::skip);
  r.ok = true;
  r.directive = Directive::timeout;
  EXPECT_EQ(outcome(r), Outcome::fail);
  r.directive = Directive::skip;
  EXPECT_EQ(outcome(r), Outcome::skip);
}

TEST(KtapParse, FlatDocument) {
  Document doc = parse(
      "KTAP version 1\n"
      "1..3\n"
      "# starting\n"
      "ok 1 a\n"
      "not ok 2 b\n"
      "ok 3 c # SKIP nope\n");
  EXPECT_TRUE(doc.has_version);
  EXPECT_EQ(doc.plan, 3);
  ASSERT_EQ(doc.results.size(), 3u);
  EXPECT_EQ(doc.results[0].diagnostics, std::vector<std::string>{"# starting"});
  EXPECT_TRUE(doc.problems.empty());
  Counts total;
  for (const auto& r : doc.results) total += count(r);
  EXPECT_EQ(total.passed, 1);
  EXPECT_EQ(total.failed, 1);
  EXPECT_EQ(total.skipped, 1);
}

TEST(KtapParse, NestedSubtestsAsKselftestRunnerWritesThem) {
  Document doc = parse(
      "KTAP version 1\n"
      "1..2\n"
      "    KTAP version 1\n"
      "    1..2\n"
      "    # diag for one\n"
      "    ok 1 prog.one\n"
      "    ok 2 prog.two # SKIP no device\n"
      "ok 1 prog\n"
      "    TAP version 13\n"
      "    1..1\n"
      "    not ok 1 other.x\n"
      "    # trailing output\n"
      "not ok 2 other\n");
  ASSERT_EQ(doc.results.size(), 2u);
  const Result& prog = doc.results[0];
  ASSERT_EQ(prog.subtests.size(), 2u);
  EXPECT_EQ(prog.plan, 2);
  EXPECT_EQ(prog.subtests[0].diagnostics, std::vector<std::string>{"# diag for one"});
  Counts c = count(prog);
  EXPECT_EQ(c.passed, 1);
  EXPECT_EQ(c.skipped, 1);
  EXPECT_EQ(c.failed, 0);

  const Result& other = doc.results[1];
  EXPECT_EQ(count(other).failed, 1);  // the subtest's failure, not counted twice
  EXPECT_EQ(other.diagnostics, std::vector<std::string>{"# trailing output"});
  EXPECT_TRUE(doc.problems.empty());
}

TEST(KtapParse, ProgramFailureWithPassingSubtestsStillCounts) {
  Document doc = parse(
      "KTAP version 1\n1..1\n"
      "    KTAP version 1\n    1..1\n    ok 1 t\n"
      "# prog: exit status 139\n"
      "not ok 1 prog\n");
  ASSERT_EQ(doc.results.size(), 1u);
  Counts c = count(doc.results[0]);
  EXPECT_EQ(c.passed, 1);
  EXPECT_EQ(c.failed, 1);
}

TEST(KtapParse, ThreeLevels) {
  Document doc = parse(
      "KTAP version 1\n1..1\n"
      "    KTAP version 1\n    1..1\n"
      "        KTAP version 1\n        1..2\n        ok 1 leaf1\n        not ok 2 leaf2\n"
      "    not ok 1 middle\n"
      "not ok 1 top\n");
  ASSERT_EQ(doc.results.size(), 1u);
  ASSERT_EQ(doc.results[0].subtests.size(), 1u);
  ASSERT_EQ(doc.results[0].subtests[0].subtests.size(), 2u);
  Counts c = count(doc.results[0]);
  EXPECT_EQ(c.passed, 1);
  EXPECT_EQ(c.failed, 1);
  EXPECT_TRUE(doc.problems.empty());
}

TEST(KtapParse, TruncatedRunSynthesizesIncompleteResult) {
  // The VM died inside the second program.
  Document doc = parse(
      "KTAP version 1\n1..2\n"
      "ok 1 first\n"
      "    KTAP version 1\n    1..3\n    ok 1 a\n");
  ASSERT_EQ(doc.results.size(), 2u);
  const Result& cut = doc.results[1];
  EXPECT_TRUE(cut.synthesized);
  EXPECT_EQ(outcome(cut), Outcome::fail);
  ASSERT_EQ(cut.subtests.size(), 1u);
  EXPECT_FALSE(doc.problems.empty());
}

TEST(KtapParse, MissingResultsAgainstPlanAreProblems) {
  Document doc = parse("KTAP version 1\n1..4\nok 1 a\n");
  ASSERT_EQ(doc.results.size(), 1u);
  ASSERT_FALSE(doc.problems.empty());
  EXPECT_NE(doc.problems.back().message.find("planned 4"), std::string::npos);
}

TEST(KtapParse, MalformedInputIsSurvived) {
  Document doc = parse(
      "garbage before\n"
      "KTAP version 1\n"
      "1..x\n"
      "  ok 1 two-space indent\n"
      "ok 5 wrong number\n"
      "1..2\n"
      "1..3\n"
      "                        ok 1 jumped deep\n"
      "KTAP version 1\n"
      "\x01\x02 binary \xff\n"
      "ok\n");
  EXPECT_GE(doc.results.size(), 2u);
  EXPECT_GE(doc.problems.size(), 4u);
}

TEST(KtapParse, CarriageReturnsFromASerialLineAreIgnored) {
  Document doc = parse("KTAP version 1\r\n1..1\r\nok 1 a # SKIP why\r\n");
  ASSERT_EQ(doc.results.size(), 1u);
  EXPECT_EQ(doc.results[0].reason, "why");
  EXPECT_EQ(doc.results[0].directive, Directive::skip);
}

TEST(KtapParse, HostileDepthIsBounded) {
  std::string deep(100000, ' ');
  deep += "ok 1 x\n";
  Document doc = parse("KTAP version 1\n1..1\n" + deep + "ok 1 top\n");
  EXPECT_FALSE(doc.problems.empty());
  ASSERT_FALSE(doc.results.empty());
}

TEST(KtapParser, StreamingCallbackSeesEachResultOnceWithItsDepth) {
  std::vector<std::pair<std::string, int>> seen;
  Parser parser([&](const Result& r, int depth) { seen.emplace_back(r.name, depth); });
  parser.feed("KTAP version 1\n1..1\n    KTAP version 1\n    1..1\n    ok 1 in");
  EXPECT_TRUE(seen.empty());  // the line is not finished yet
  parser.feed("ner\nok 1 outer\n");
  parser.finish();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::make_pair(std::string("inner"), 1));
  EXPECT_EQ(seen[1], std::make_pair(std::string("outer"), 0));
}

TEST(KtapWriter, RoundTripsThroughTheParser) {
  char* buffer = nullptr;
  std::size_t size = 0;
  std::FILE* memory = open_memstream(&buffer, &size);
  ASSERT_NE(memory, nullptr);
  {
    Writer out(memory);
    out.header();
    out.plan(3);
    out.diagnostic("two\nlines");
    out.pass("a");
    out.fail("b", "because");
    out.skip("c", "no device");
    EXPECT_EQ(out.number(), 3);
  }
  std::fclose(memory);
  std::string text(buffer, size);
  std::free(buffer);

  Document doc = parse(text);
  ASSERT_EQ(doc.results.size(), 3u);
  EXPECT_EQ(doc.results[0].diagnostics, (std::vector<std::string>{"# two", "# lines"}));
  EXPECT_EQ(outcome(doc.results[1]), Outcome::fail);
  EXPECT_EQ(doc.results[1].diagnostics, std::vector<std::string>{"# because"});
  EXPECT_EQ(doc.results[2].reason, "no device");
  EXPECT_TRUE(doc.problems.empty());
}

// kselftest's rule, from one place for every program: a failure fails, only
// skips skip, and the totals line counts what the writer wrote.
TEST(KtapWriter, FinishWritesTotalsAndReturnsTheExitCode) {
  EXPECT_EQ(exit_code({1, 0, 5}), kExitPass);
  EXPECT_EQ(exit_code({0, 0, 2}), kExitSkip);
  EXPECT_EQ(exit_code({3, 1, 0}), kExitFail);
  EXPECT_EQ(exit_code({}), kExitPass);
  char* buffer = nullptr;
  std::size_t size = 0;
  std::FILE* memory = open_memstream(&buffer, &size);
  ASSERT_NE(memory, nullptr);
  int code = -1;
  {
    Writer out(memory);
    out.pass("a");
    out.result(false, "b", Directive::xfail);
    out.skip("c", "why");
    out.result(false, "d", Directive::timeout);
    code = out.finish();
  }
  std::fclose(memory);
  std::string text(buffer, size);
  std::free(buffer);
  EXPECT_EQ(code, kExitFail);
  EXPECT_NE(text.find("# Totals: pass:2 fail:1 xfail:0 xpass:0 skip:1 error:0\n"), std::string::npos) << text;
}

// What a Writer wrote to its stream, from `write` given the Writer.
std::string written(const std::function<void(Writer&)>& write) {
  char* buffer = nullptr;
  std::size_t size = 0;
  std::FILE* memory = open_memstream(&buffer, &size);
  if (memory == nullptr) return "open_memstream failed";
  {
    Writer out(memory);
    write(out);
  }
  std::fclose(memory);
  std::string text(buffer, size);
  std::free(buffer);
  return text;
}

// "No device": a skip with no test at all, the same text from every program.
TEST(KtapWriter, SkipAllWritesAnEmptyPlanTheReasonAndTotals) {
  int code = -1;
  const std::string text = written([&](Writer& out) {
    out.header();
    code = out.skip_all("no device: pass a BDF");
  });
  EXPECT_EQ(code, kExitSkip);
  EXPECT_EQ(text,
            "KTAP version 1\n"
            "1..0\n"
            "# no device: pass a BDF\n"
            "# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:0 error:0\n");
  Document doc = parse(text);
  EXPECT_EQ(doc.plan, 0);
  EXPECT_TRUE(doc.results.empty());
  EXPECT_TRUE(doc.problems.empty());
}

TEST(KtapWriter, RelayKeepsDiagnosticsAndMarksOtherLines) {
  const std::string text = written([](Writer& out) {
    out.relay("# already one");
    out.relay("#");
    out.relay("plain output");
    out.relay("");
  });
  EXPECT_EQ(text, "# already one\n#\n# plain output\n# \n");
}

}  // namespace
}  // namespace vfiolab::ktap
