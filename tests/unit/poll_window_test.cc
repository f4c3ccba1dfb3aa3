// Tests of the adaptive poll window: it opens when work follows soon after a thread runs dry,
// stays while polling finds work, and closes when work comes later than the longest window.
#include "devices/poll_window.h"

#include <gtest/gtest.h>

namespace kdom::devices {
namespace {

using std::chrono::microseconds;

TEST(PollWindowTest, StartsClosed) { EXPECT_EQ(PollWindow(PollSettings{microseconds(50)}).current(), microseconds(0)); }

TEST(PollWindowTest, OpensWhenWorkCameSoonEnough) {
  PollWindow window(PollSettings{microseconds(50)});
  window.record(microseconds(1));
  EXPECT_EQ(window.current(), PollWindow::kFirst);
  window.record(microseconds(20));  // a window of 20 us would have caught it
  EXPECT_EQ(window.current(), microseconds(20));
  window.record(microseconds(30));
  EXPECT_EQ(window.current(), microseconds(40));  // doubled, since that is more
  window.record(microseconds(45));
  EXPECT_EQ(window.current(), microseconds(50));  // never above the maximum
}

TEST(PollWindowTest, StaysWhilePollingFindsWork) {
  PollWindow window(PollSettings{microseconds(50)});
  window.record(microseconds(30));
  ASSERT_EQ(window.current(), microseconds(30));
  for (int i = 0; i < 10; ++i) window.record(microseconds(2));
  EXPECT_EQ(window.current(), microseconds(30));
}

TEST(PollWindowTest, ClosesWhenWorkComesLate) {
  PollWindow window(PollSettings{microseconds(64)});
  window.record(microseconds(64));
  ASSERT_EQ(window.current(), microseconds(64));
  window.record(microseconds(500));
  EXPECT_EQ(window.current(), microseconds(32));
  window.record(microseconds(500));
  window.record(microseconds(500));
  window.record(microseconds(500));
  EXPECT_EQ(window.current(), microseconds(4));
  window.record(microseconds(500));
  EXPECT_EQ(window.current(), microseconds(0));  // below the first window: closed
}

TEST(PollWindowTest, PreemptionClosesItForLongerEachTime) {
  PollWindow window(PollSettings{microseconds(50)});
  window.record(microseconds(20));
  ASSERT_EQ(window.current(), microseconds(20));
  window.preempted();
  EXPECT_EQ(window.current(), microseconds(0));
  for (uint32_t i = 0; i < PollWindow::kFirstHoldOff; ++i) window.record(microseconds(1));
  EXPECT_EQ(window.current(), microseconds(0));  // held closed
  window.record(microseconds(1));
  EXPECT_EQ(window.current(), PollWindow::kFirst);  // may open again
  window.preempted();
  for (uint32_t i = 0; i < 2 * PollWindow::kFirstHoldOff; ++i) window.record(microseconds(1));
  EXPECT_EQ(window.current(), microseconds(0));  // twice as long this time
  window.record(microseconds(1));
  EXPECT_EQ(window.current(), PollWindow::kFirst);
}

TEST(PollWindowTest, ZeroMaximumNeverPolls) {
  PollWindow window(PollSettings{microseconds(0)});
  window.record(microseconds(0));
  window.record(microseconds(1));
  EXPECT_EQ(window.current(), microseconds(0));
}

}  // namespace
}  // namespace kdom::devices
