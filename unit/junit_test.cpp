#include "junit.h"

#include <gtest/gtest.h>

namespace vfiolab::lab {
namespace {

int occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(JunitXml, EscapesMarkupAndControlCharacters) {
  EXPECT_EQ(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
  EXPECT_EQ(xml_escape(std::string("x\x01y\tz\n", 6)), "x?y\tz\n");
}

TEST(JunitXml, OneCasePerLeafAndKernelFindings) {
  ktap::Document doc = ktap::parse(
      "KTAP version 1\n1..2\n"
      "    KTAP version 1\n    1..2\n    ok 1 t.a\n    ok 2 t.b # SKIP no <device>\n"
      "ok 1 prog1\n"
      "    KTAP version 1\n    1..1\n    ok 1 only\n"
      "# prog2: exit status 139\n"
      "not ok 2 prog2\n");
  kernel_log::Finding finding{kernel_log::Kind::warning, 7, "prog2", {"WARNING: CPU: 0 at x.c:1"}};
  std::string xml = junit_xml(doc, {finding}, {"the run timed out"});

  EXPECT_EQ(occurrences(xml, "<testsuite "), 3);  // prog1, prog2, lab
  EXPECT_EQ(occurrences(xml, "<testcase "), 6);   // t.a, t.b, only, (program), finding, note
  EXPECT_EQ(occurrences(xml, "<skipped "), 1);
  EXPECT_EQ(occurrences(xml, "<failure "), 3);
  EXPECT_NE(xml.find("no &lt;device&gt;"), std::string::npos);
  EXPECT_NE(xml.find("WARNING during prog2"), std::string::npos);
}

}  // namespace
}  // namespace vfiolab::lab
