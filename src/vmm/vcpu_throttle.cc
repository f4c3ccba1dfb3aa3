// The vCPU throttle: its thread's kicks, once a period, and a vCPU's rest after one.
#include "vmm/vcpu_throttle.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace kdom::vmm {

namespace {

constexpr int64_t kNsPerS = 1'000'000'000;

int64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * kNsPerS + now.tv_nsec;
}

}  // namespace

VcpuThrottle::Clock::duration VcpuThrottle::period(uint32_t percent, Clock::duration base) {
  percent = std::min(percent, kMaxPercent);
  return std::max(base, Clock::duration(kMinRun) * 100 / (100 - percent));
}

VcpuThrottle::VcpuThrottle(size_t vcpus, Kick kick, Clock::duration base_period)
    : kick_(std::move(kick)), base_period_(base_period), kicked_(vcpus) {}

VcpuThrottle::~VcpuThrottle() { set_percent(0); }

void VcpuThrottle::set_percent(uint32_t percent) {
  std::lock_guard set_lock(set_mutex_);
  percent = std::min(percent, kMaxPercent);
  percent_.store(percent, std::memory_order_relaxed);
  if (percent != 0 && !thread_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stop_ = false;
    }
    try {
      thread_ = std::thread([this] { run(); });
    } catch (const std::system_error& error) {
      percent_.store(0, std::memory_order_relaxed);
      throw VcpuThrottleError(std::string("cannot start the vCPU throttle's thread: ") + error.what());
    }
  } else if (percent == 0 && thread_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    thread_.join();
    // A kick not yet taken would make its vCPU rest once more, at no share: harmless, but a
    // stopped throttle leaves nothing behind.
    for (auto& kicked : kicked_) kicked.store(false, std::memory_order_relaxed);
  }
}

void VcpuThrottle::run() {
  std::unique_lock lock(mutex_);
  auto next = Clock::now();
  while (!stop_cv_.wait_until(lock, next, [this] { return stop_; })) {
    const uint32_t percent = percent_.load(std::memory_order_relaxed);
    const auto length = period(percent, base_period_);
    const auto share = std::chrono::duration_cast<std::chrono::nanoseconds>(length) * percent / 100;
    rest_until_ns_.store(monotonic_ns() + share.count(), std::memory_order_relaxed);
    // The mark before the kick: a vCPU that the kick sends out of KVM_RUN finds it (and the
    // end of its rest with it).
    for (size_t vcpu = 0; vcpu < kicked_.size(); ++vcpu) {
      kicked_[vcpu].store(true, std::memory_order_release);
      kick_(vcpu);
    }
    next += length;
    // A thread that was not scheduled for a while starts afresh rather than kick in a burst.
    const auto now = Clock::now();
    if (now > next) next = now + length;
  }
}

void VcpuThrottle::rest(const std::function<bool()>& wake) const {
  // A pause's or stop's signal that came before the sleep began would not cut it short.
  if (percent_.load(std::memory_order_relaxed) == 0 || wake()) return;
  // An absolute deadline: a sleep a signal cut short goes on to the same end.
  const int64_t end_ns = rest_until_ns_.load(std::memory_order_relaxed);
  const timespec until{static_cast<time_t>(end_ns / kNsPerS), static_cast<long>(end_ns % kNsPerS)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR)
    if (wake()) return;
}

}  // namespace kdom::vmm
