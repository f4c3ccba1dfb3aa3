// Rate limiting for device I/O: token buckets for bytes and for operations, as a user asks for
// with `--disk ...,bw=,iops=` (and the same for other devices). Time is passed in, so the
// buckets are plain arithmetic that unit tests drive with a fake clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace kdom::devices {

using RateClock = std::chrono::steady_clock;

// Limits as the user gives them; 0 means unlimited.
struct RateLimit {
  uint64_t bytes_per_second = 0;
  uint64_t ops_per_second = 0;
  bool unlimited() const { return bytes_per_second == 0 && ops_per_second == 0; }
};

// `rate` tokens per second, holding at most one second's worth (the largest burst). A cost
// above the capacity is let through once the bucket is full and leaves it in debt, so a large
// request waits, but is never refused for ever.
class TokenBucket {
 public:
  TokenBucket(uint64_t rate_per_second, RateClock::time_point now);

  // Takes `cost` tokens and returns true if they are there now; takes nothing otherwise.
  bool try_take(uint64_t cost, RateClock::time_point now);
  // How long from `now` until try_take(cost) would succeed (zero if it would now).
  std::chrono::nanoseconds wait_for(uint64_t cost, RateClock::time_point now) const;

 private:
  double tokens_at(RateClock::time_point now) const;
  double needed(uint64_t cost) const;

  double rate_;      // tokens per second
  double capacity_;  // at most this many tokens
  double tokens_;    // at last_
  RateClock::time_point last_;
};

// Bytes and operations together: a request goes through only if both buckets allow it.
class RateLimiter {
 public:
  RateLimiter(const RateLimit& limit, RateClock::time_point now);

  bool try_take(uint64_t bytes, RateClock::time_point now);
  std::chrono::nanoseconds wait_for(uint64_t bytes, RateClock::time_point now) const;

 private:
  std::optional<TokenBucket> bytes_;
  std::optional<TokenBucket> ops_;
};

}  // namespace kdom::devices
