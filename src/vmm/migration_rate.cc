// A live migration's bandwidth, convergence, pacing and auto-converge's throttle.
#include "vmm/migration_rate.h"

#include <algorithm>

namespace kdom::vmm {

MigrationRate::MigrationRate(uint64_t downtime_ms, uint32_t max_rounds, uint64_t max_bytes_per_s)
    : downtime_ms_(downtime_ms), max_rounds_(max_rounds), max_bytes_per_s_(max_bytes_per_s) {}

void MigrationRate::round_sent(uint64_t bytes, double seconds) {
  if (bytes == 0 || seconds <= 0) return;
  if (bytes_per_s_ == 0 || bytes >= kMinMeasuredBytes) bytes_per_s_ = static_cast<double>(bytes) / seconds;
}

double MigrationRate::expected_ms(uint64_t bytes) const {
  return bytes_per_s_ > 0 ? static_cast<double>(bytes) / bytes_per_s_ * 1000.0 : 0.0;
}

bool MigrationRate::converged(uint64_t remaining, uint32_t rounds) const {
  if (remaining == 0 || rounds >= max_rounds_) return true;
  return bytes_per_s_ > 0 && expected_ms(remaining) <= static_cast<double>(downtime_ms_);
}

std::chrono::nanoseconds MigrationRate::pace(uint64_t bytes, double seconds) const {
  if (max_bytes_per_s_ == 0) return std::chrono::nanoseconds(0);
  const double due = static_cast<double>(bytes) / static_cast<double>(max_bytes_per_s_);
  if (due <= seconds) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(static_cast<int64_t>((due - seconds) * 1e9));
}

uint32_t MigrationRate::throttle_after(uint32_t round, uint32_t current, double dirty_bytes_per_s,
                                       double bytes_per_s) {
  if (round < 2 || bytes_per_s <= 0 || dirty_bytes_per_s < bytes_per_s / 2) return current;
  if (current == 0) return kFirstThrottle;
  return std::min(current + kThrottleStep, kMaxThrottle);
}

}  // namespace kdom::vmm
