// Time elapsed on the monotonic clock, as the seconds and milliseconds that logs and replies
// give (a migration's rounds and pause, a save's downtime).
#pragma once

#include <chrono>

namespace kdom {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double ms_between(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

}  // namespace kdom
