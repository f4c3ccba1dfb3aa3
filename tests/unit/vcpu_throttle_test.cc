// Tests of VcpuThrottle with fake vCPU threads: a fake "runs the guest" until the throttle's
// kick, then takes the kick and rests, as a vCPU thread does out of KVM_RUN. The share of the
// time they rest follows the percent set, the period grows only at the highest shares, no
// kick comes once it is back at 0, a signal cuts a rest short only when the vCPU has something
// to see to. The policy that sets the percent (MigrationRate::throttle_after) is tested in
// migration_control_test.cc.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "eventually.h"
#include "vmm/vcpu_throttle.h"

namespace kdom::vmm {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Fake vCPUs: each thread spins "in the guest" until kicked out, then takes the kick and rests
// its share, adding up how long it rested and how many kicks it took.
class FakeVcpus {
 public:
  explicit FakeVcpus(size_t count, Clock::duration period = VcpuThrottle::kPeriod)
      : out_(count), rested_ns_(count), kicks_(count),
        throttle_(count, [this](size_t vcpu) { out_[vcpu].store(true); }, period) {
    for (size_t i = 0; i < count; ++i) threads_.emplace_back([this, i] { run(i); });
  }
  ~FakeVcpus() {
    done_ = true;
    for (auto& thread : threads_) thread.join();
  }

  VcpuThrottle& throttle() { return throttle_; }
  // The share of `window` the vCPUs rested, on average, from now.
  double rested_share(Clock::duration window) {
    const auto before = total_rested_ns();
    std::this_thread::sleep_for(window);
    const double rested = static_cast<double>(total_rested_ns() - before);
    const double window_ns = static_cast<double>(std::chrono::nanoseconds(window).count());
    return rested / window_ns / static_cast<double>(threads_.size());
  }
  uint64_t kicks() const {
    uint64_t total = 0;
    for (const auto& kicks : kicks_) total += kicks.load();
    return total;
  }

 private:
  void run(size_t vcpu) {
    while (!done_) {
      // "In the guest": until the kick sends it out.
      while (!out_[vcpu].load() && !done_) std::this_thread::yield();
      out_[vcpu] = false;
      if (!throttle_.take_kick(vcpu)) continue;
      ++kicks_[vcpu];
      const auto start = Clock::now();
      throttle_.rest([] { return false; });
      rested_ns_[vcpu] += static_cast<uint64_t>(std::chrono::nanoseconds(Clock::now() - start).count());
    }
  }
  uint64_t total_rested_ns() const {
    uint64_t total = 0;
    for (const auto& ns : rested_ns_) total += ns.load();
    return total;
  }

  std::atomic<bool> done_{false};
  std::vector<std::atomic<bool>> out_;
  std::vector<std::atomic<uint64_t>> rested_ns_;
  std::vector<std::atomic<uint64_t>> kicks_;
  VcpuThrottle throttle_;  // after what its kick touches; its thread ends before they go
  std::vector<std::thread> threads_;
};

TEST(VcpuThrottleTest, VcpusRestTheirShareOfEachPeriod) {
  FakeVcpus vcpus(2);
  EXPECT_EQ(vcpus.throttle().percent(), 0u);
  EXPECT_LT(vcpus.rested_share(100ms), 0.01);  // no throttle, no kick
  EXPECT_EQ(vcpus.kicks(), 0u);
  vcpus.throttle().set_percent(50);
  EXPECT_EQ(vcpus.throttle().percent(), 50u);
  // Wide bounds: the test may share its CPUs with others.
  const double half = vcpus.rested_share(500ms);
  EXPECT_GT(half, 0.3);
  EXPECT_LT(half, 0.6);
  vcpus.throttle().set_percent(90);
  const double most = vcpus.rested_share(500ms);
  EXPECT_GT(most, 0.65);
  EXPECT_LT(most, 0.95);
  EXPECT_GT(most, half);
  vcpus.throttle().set_percent(200);  // beyond the most: the most, in periods of 100 ms
  EXPECT_EQ(vcpus.throttle().percent(), VcpuThrottle::kMaxPercent);
  const double nearly_all = vcpus.rested_share(1s);
  EXPECT_GT(nearly_all, 0.85);  // ten periods, and the fakes take their kicks late on a busy host
  EXPECT_LT(nearly_all, 1.0);
}

// The period stays 10 ms until the vCPU's part of it would be under a millisecond.
TEST(VcpuThrottleTest, ThePeriodGrowsOnlyToLeaveTheVcpuAMillisecond) {
  using std::chrono::milliseconds;
  for (uint32_t percent : {0u, 20u, 50u, 90u}) EXPECT_EQ(VcpuThrottle::period(percent), milliseconds(10)) << percent;
  EXPECT_EQ(VcpuThrottle::period(95), milliseconds(20));
  EXPECT_EQ(VcpuThrottle::period(98), milliseconds(50));
  EXPECT_EQ(VcpuThrottle::period(99), milliseconds(100));
  EXPECT_EQ(VcpuThrottle::period(100), milliseconds(100));  // taken as 99
  EXPECT_EQ(VcpuThrottle::period(99, 1s), 1s);
}

TEST(VcpuThrottleTest, KicksComeOncePerPeriodAndStopAtZero) {
  FakeVcpus vcpus(3, 20ms);
  vcpus.throttle().set_percent(10);
  std::this_thread::sleep_for(500ms);
  vcpus.throttle().set_percent(0);
  const uint64_t kicks = vcpus.kicks();
  EXPECT_GE(kicks, 3u * 15);  // 25 periods each, less what a busy machine delays
  EXPECT_LE(kicks, 3u * 27);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(vcpus.kicks(), kicks);  // no thread any more
  EXPECT_LT(vcpus.rested_share(100ms), 0.01);
  // And it starts again.
  vcpus.throttle().set_percent(30);
  EXPECT_TRUE(eventually([&] { return vcpus.kicks() > kicks; }));
}

TEST(VcpuThrottleTest, ARestAtZeroOrWithoutAThreadReturnsAtOnce) {
  std::atomic<int> kicks{0};
  VcpuThrottle throttle(1, [&](size_t) { ++kicks; }, 1s);
  EXPECT_FALSE(throttle.take_kick(0));
  const auto start = Clock::now();
  throttle.rest([] { return false; });
  EXPECT_LT(Clock::now() - start, 50ms);
  EXPECT_EQ(kicks, 0);
}

TEST(VcpuThrottleTest, AStopDropsTheKicksNotTaken) {
  std::atomic<int> kicks{0};
  VcpuThrottle throttle(2, [&](size_t) { ++kicks; }, 5ms);
  throttle.set_percent(50);
  ASSERT_TRUE(eventually([&] { return kicks >= 2; }));
  throttle.set_percent(0);
  EXPECT_FALSE(throttle.take_kick(0));
  EXPECT_FALSE(throttle.take_kick(1));
}

void ignore(int) {}

// A signal (a pause's or a stop's kick) during a rest: the vCPU goes to see to it when `wake`
// says so, and rests on to the end of its share when not.
TEST(VcpuThrottleTest, ASignalCutsARestShortOnlyWhenTheVcpuMustWake) {
  struct sigaction action{}, old{};
  action.sa_handler = ignore;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR2, &action, &old), 0);  // no SA_RESTART, as the kick signal's
  for (const bool must_wake : {true, false}) {
    std::atomic<bool> out{false};
    VcpuThrottle throttle(1, [&](size_t) { out = true; }, 400ms);
    throttle.set_percent(VcpuThrottle::kMaxPercent);  // rests of 396 ms from each kick
    std::atomic<bool> resting{false};
    Clock::time_point kicked, rested;
    std::thread vcpu([&] {
      while (!out) std::this_thread::sleep_for(1ms);
      kicked = Clock::now();
      if (!throttle.take_kick(0)) return;
      resting = true;
      throttle.rest([&] { return must_wake && resting; });
      rested = Clock::now();
    });
    ASSERT_TRUE(eventually([&] { return resting.load(); }));
    std::this_thread::sleep_for(50ms);  // well into its rest
    pthread_kill(vcpu.native_handle(), SIGUSR2);
    vcpu.join();
    if (must_wake) {
      EXPECT_LT(rested - kicked, 300ms);
    } else {
      EXPECT_GE(rested - kicked, 385ms);  // 396 ms from the kick, seen up to a ms late
    }
    throttle.set_percent(0);
  }
  sigaction(SIGUSR2, &old, nullptr);
}

// A vCPU that comes out late rests only what is left of its share: its share of running stays.
TEST(VcpuThrottleTest, ARestEndsItsShareAfterTheKick) {
  std::atomic<bool> out{false};
  VcpuThrottle throttle(1, [&](size_t) { out = true; }, 300ms);
  throttle.set_percent(50);  // 150 ms from each kick
  ASSERT_TRUE(eventually([&] { return out.load(); }));
  ASSERT_TRUE(throttle.take_kick(0));
  std::this_thread::sleep_for(100ms);  // "in the guest" still, or handling an exit
  const auto start = Clock::now();
  throttle.rest([] { return false; });
  EXPECT_LT(Clock::now() - start, 100ms);
  throttle.set_percent(0);
}

}  // namespace
}  // namespace kdom::vmm
