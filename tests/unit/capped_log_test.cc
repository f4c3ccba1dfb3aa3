// Tests of CappedLog: lines a guest can cause are logged up to a limit, then only counted.
#include <gtest/gtest.h>

#include <string>

#include "base/log.h"

namespace kdom {
namespace {

int count_lines(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(CappedLog, LogsUpToItsLimitThenSaysSoOnceAndCounts) {
  CappedLog log("test kind", 3);
  testing::internal::CaptureStderr();
  for (int i = 0; i < 50; ++i) log.line("event " + std::to_string(i));
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(count_lines(out, "kdom: event "), 3);
  EXPECT_NE(out.find("kdom: event 2\n"), std::string::npos);
  EXPECT_EQ(out.find("kdom: event 3\n"), std::string::npos);
  EXPECT_EQ(count_lines(out, "test kind: 3 such lines logged; later ones are only counted"), 1);
  EXPECT_EQ(log.count(), 50u);
}

}  // namespace
}  // namespace kdom
