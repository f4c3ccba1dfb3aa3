// The daemon's console hub: what an interactive attach shows of the past.
#include <gtest/gtest.h>

#include <string>

#include "toolstack/console_hub.h"

namespace kdom::toolstack {
namespace {

TEST(ConsoleScreenTail, ShortOutputIsShownWhole) {
  EXPECT_EQ(console_screen_tail("boot\nlogin: ", 100), "boot\nlogin: ");
  EXPECT_EQ(console_screen_tail("", 100), "");
}

TEST(ConsoleScreenTail, LongOutputFromTheStartOfALine) {
  std::string output;
  for (int i = 0; i < 1000; ++i) output += "boot message " + std::to_string(i) + "\n";
  output += "kdom-debian login: ";
  const std::string tail = console_screen_tail(output, 100);
  EXPECT_LE(tail.size(), 100u);
  EXPECT_EQ(tail.rfind("kdom-debian login: "), tail.size() - 19);
  EXPECT_EQ(tail.rfind("boot message ", 0), 0u) << tail;  // begins at a line's start
  EXPECT_EQ(output.substr(output.size() - tail.size()), tail);
}

TEST(ConsoleScreenTail, ALineLongerThanTheLimitIsCutNotDropped) {
  const std::string output = "first\n" + std::string(500, 'x');
  EXPECT_EQ(console_screen_tail(output, 100), std::string(100, 'x'));
}

}  // namespace
}  // namespace kdom::toolstack
