// Token-bucket arithmetic for RateLimiter.
#include "devices/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace kdom::devices {

TokenBucket::TokenBucket(uint64_t rate_per_second, RateClock::time_point now)
    : rate_(static_cast<double>(rate_per_second)), capacity_(rate_), tokens_(capacity_), last_(now) {}

double TokenBucket::tokens_at(RateClock::time_point now) const {
  const double seconds = std::chrono::duration<double>(now - last_).count();
  return std::min(capacity_, tokens_ + std::max(0.0, seconds) * rate_);
}

double TokenBucket::needed(uint64_t cost) const { return std::min(static_cast<double>(cost), capacity_); }

bool TokenBucket::try_take(uint64_t cost, RateClock::time_point now) {
  const double tokens = tokens_at(now);
  if (tokens < needed(cost)) return false;
  tokens_ = tokens - static_cast<double>(cost);
  last_ = std::max(last_, now);
  return true;
}

std::chrono::nanoseconds TokenBucket::wait_for(uint64_t cost, RateClock::time_point now) const {
  const double missing = needed(cost) - tokens_at(now);
  if (missing <= 0) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(static_cast<int64_t>(std::ceil(missing / rate_ * 1e9)));
}

RateLimiter::RateLimiter(const RateLimit& limit, RateClock::time_point now) {
  if (limit.bytes_per_second != 0) bytes_.emplace(limit.bytes_per_second, now);
  if (limit.ops_per_second != 0) ops_.emplace(limit.ops_per_second, now);
}

bool RateLimiter::try_take(uint64_t bytes, RateClock::time_point now) {
  if (wait_for(bytes, now).count() > 0) return false;
  if (bytes_) bytes_->try_take(bytes, now);
  if (ops_) ops_->try_take(1, now);
  return true;
}

std::chrono::nanoseconds RateLimiter::wait_for(uint64_t bytes, RateClock::time_point now) const {
  std::chrono::nanoseconds wait{0};
  if (bytes_) wait = std::max(wait, bytes_->wait_for(bytes, now));
  if (ops_) wait = std::max(wait, ops_->wait_for(1, now));
  return wait;
}

}  // namespace kdom::devices
