// MigrationRate: a live migration's arithmetic, apart from its I/O: the bandwidth measured
// round by round, when pre-copy has done enough (what is left fits the downtime budget at
// that bandwidth, or the round limit is reached), how long the writes must wait to stay
// under a bandwidth limit, and how hard auto-converge throttles a guest that dirties its
// memory too fast for the rounds to shrink.
#pragma once

#include <chrono>
#include <cstdint>

namespace kdom::vmm {

class MigrationRate {
 public:
  // A round that sent less than this measured the socket's buffer more than the link: the
  // estimate from before stands (the first measure is taken whatever its size).
  static constexpr uint64_t kMinMeasuredBytes = 256 * 1024;

  // `max_bytes_per_s`: 0 for no limit.
  MigrationRate(uint64_t downtime_ms, uint32_t max_rounds, uint64_t max_bytes_per_s);

  // A round sent `bytes` in `seconds`.
  void round_sent(uint64_t bytes, double seconds);
  // The bandwidth measured, bytes a second; 0 until a round has been measured.
  double bytes_per_s() const { return bytes_per_s_; }
  // How long `bytes` would take at that bandwidth, in ms (0 while it is unmeasured).
  double expected_ms(uint64_t bytes) const;
  // Whether pre-copy stops, with `remaining` bytes dirty after `rounds` rounds: nothing is
  // left, or it fits the downtime budget at the measured bandwidth, or the rounds are spent.
  bool converged(uint64_t remaining, uint32_t rounds) const;
  // How long to wait before writing more, `bytes` having been sent `seconds` after the round
  // began, so that the round stays under the limit (zero without one).
  std::chrono::nanoseconds pace(uint64_t bytes, double seconds) const;

  // Auto-converge: the vCPU throttle in percent (VcpuThrottle) once pre-copy round `round`
  // has ended without converging, `current` being the throttle until then. A guest that
  // dirties memory at least half as fast as the link carries it (`dirty_bytes_per_s` against
  // `bytes_per_s`) leaves each round at least half as much as it sent, or more: the rounds
  // shrink too slowly to fit the downtime, if at all. Such a guest is throttled to
  // kFirstThrottle from round 2 on (round 1 sent all of RAM: its dirty rate says little),
  // then kThrottleStep points more for each round that ends so, kMaxThrottle at most. A
  // slower guest keeps the throttle it has (its rounds shrink; easing off would undo that).
  static constexpr uint32_t kFirstThrottle = 20;
  static constexpr uint32_t kThrottleStep = 10;
  static constexpr uint32_t kMaxThrottle = 99;
  static uint32_t throttle_after(uint32_t round, uint32_t current, double dirty_bytes_per_s, double bytes_per_s);

 private:
  uint64_t downtime_ms_;
  uint32_t max_rounds_;
  uint64_t max_bytes_per_s_;
  double bytes_per_s_ = 0;
};

}  // namespace kdom::vmm
