// Time elapsed on the monotonic clock, as the seconds and milliseconds that logs and replies
// give (a migration's rounds and pause, a save's downtime).
#pragma once

#include <chrono>
#include <cstdint>

namespace kdom {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A time point as CLOCK_MONOTONIC's nanoseconds (steady_clock's clock on Linux): comparable
// between processes on one host.
inline int64_t monotonic_ns(std::chrono::steady_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
}

inline double ms_between(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

}  // namespace kdom
