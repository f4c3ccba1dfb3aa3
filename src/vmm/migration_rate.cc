// A live migration's bandwidth, convergence and pacing.
#include "vmm/migration_rate.h"

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

}  // namespace kdom::vmm
