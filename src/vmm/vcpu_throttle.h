// VcpuThrottle: slows a running guest down by keeping each vCPU out of the guest for a set
// share of every short period. Live migration's auto-converge uses it on a guest that dirties
// its memory faster than the link carries it (docs/migration.md): a guest given less CPU time
// dirties less. While the share is not zero, a thread of the throttle's own wakes once a
// period, marks every vCPU kicked and kicks it out of KVM_RUN (the domain's Kick: its
// immediate_exit and the kick signal); the vCPU's thread, back in the VMM, takes the mark
// (take_kick) and sleeps its share of the period (rest) before it enters KVM_RUN again. The
// period is 10 ms, longer only where the vCPU's part of it would be under kMinRun. At zero
// there is no thread and no timer, and a vCPU's loop looks at the throttle only when
// something (a pause, a stop) has interrupted KVM_RUN: one atomic load.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "base/error.h"

namespace kdom::vmm {

// The throttle's thread could not be started.
class VcpuThrottleError : public Error {
 public:
  using Error::Error;
};

class VcpuThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  // Short enough that a throttled guest's timers and I/O still come many times a second, long
  // enough that the kicks cost little (100 signals a second per vCPU).
  static constexpr std::chrono::milliseconds kPeriod{10};
  // The least a vCPU runs in a period: the kick's own delay counts as running (a signal takes
  // a vCPU out of the guest in microseconds on hardware, but in 0.5 to 1.5 ms in this
  // machine's nested KVM), and a shorter part would be mostly that delay: the throttle would
  // be far less than asked. At 99% the period is 100 ms, the vCPU asleep for 99 of them.
  static constexpr std::chrono::milliseconds kMinRun{1};
  // Not 100: a guest that never ran would not answer its timers or devices at all.
  static constexpr uint32_t kMaxPercent = 99;

  // The period at `percent`: `base`, or longer, so that the part left to run is kMinRun.
  static Clock::duration period(uint32_t percent, Clock::duration base = kPeriod);

  // Makes vCPU `vcpu` leave KVM_RUN soon, whether it is in it or about to enter it.
  using Kick = std::function<void(size_t vcpu)>;

  VcpuThrottle(size_t vcpus, Kick kick, Clock::duration base_period = kPeriod);
  // Stops the thread, if one runs.
  ~VcpuThrottle();
  VcpuThrottle(const VcpuThrottle&) = delete;
  VcpuThrottle& operator=(const VcpuThrottle&) = delete;

  // The share of each period (percent) a vCPU sleeps, 0..kMaxPercent (more is taken as
  // kMaxPercent). The first non-zero share starts the thread; 0 stops it (waited for) and
  // drops the kicks no vCPU has taken yet, so the guest runs at full speed at once. Throws
  // VcpuThrottleError when the thread cannot start.
  void set_percent(uint32_t percent);
  uint32_t percent() const { return percent_.load(std::memory_order_relaxed); }

  // In vCPU `vcpu`'s thread, out of KVM_RUN: whether the throttle kicked it since it last
  // looked (and forgets that it did). A plain load unless it did.
  bool take_kick(size_t vcpu) {
    auto& kicked = kicked_[vcpu];
    return kicked.load(std::memory_order_relaxed) && kicked.exchange(false, std::memory_order_acquire);
  }
  // In a vCPU's thread, once it took a kick: sleeps until its share of the period is over,
  // counted from the kick (a vCPU that came out late rests less: it was not in the guest
  // either, or was for a kick's delay); none at 0, nor when `wake` says at once that the vCPU
  // has something to see to (a pause, a stop). A signal cuts the sleep short only when
  // `wake` then says so; otherwise it sleeps on to the end of its share.
  void rest(const std::function<bool()>& wake) const;

 private:
  void run();

  const Kick kick_;
  const Clock::duration base_period_;
  std::vector<std::atomic<bool>> kicked_;  // per vCPU: kicked, not yet taken
  std::atomic<uint32_t> percent_{0};
  std::atomic<int64_t> rest_until_ns_{0};  // the last kicks' share's end, CLOCK_MONOTONIC

  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;   // under mutex_: the thread is to end
  std::thread thread_;  // set_percent's (its callers take turns: under set_mutex_)
  std::mutex set_mutex_;
};

}  // namespace kdom::vmm
