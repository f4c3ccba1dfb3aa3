// StandbyThread: the work runs in the thread made ahead; unused, it ends; given twice, refused.
#include "base/standby_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "base/error.h"

namespace kdom {
namespace {

TEST(StandbyThreadTest, RunsTheWorkInTheThreadMadeAhead) {
  std::thread::id ran_in;
  {
    StandbyThread thread;
    thread.run([&] { ran_in = std::this_thread::get_id(); });
    thread.join();
  }
  EXPECT_NE(ran_in, std::thread::id());
  EXPECT_NE(ran_in, std::this_thread::get_id());
}

TEST(StandbyThreadTest, JoinWaitsForTheWork) {
  std::atomic<bool> done{false};
  StandbyThread thread;
  thread.run([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done = true;
  });
  thread.join();
  EXPECT_TRUE(done);
}

TEST(StandbyThreadTest, NeverGivenWorkItEndsOnDestruction) {
  auto thread = std::make_unique<StandbyThread>();
  thread.reset();  // would hang if the waiting thread were not told to end
  SUCCEED();
}

TEST(StandbyThreadTest, WorkGivenTwiceOrAfterJoinIsRefused) {
  StandbyThread thread;
  thread.run([] {});
  EXPECT_THROW(thread.run([] {}), Error);
  thread.join();
  StandbyThread joined;
  joined.join();
  EXPECT_THROW(joined.run([] {}), Error);
}

}  // namespace
}  // namespace kdom
