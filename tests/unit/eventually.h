// Tests of things that happen on other threads or processes: wait for a condition, bounded.
#pragma once

#include <chrono>
#include <thread>

namespace kdom {

// True once `done()` is, checking every 10 ms for up to 5 s.
template <typename Predicate>
bool eventually(Predicate done) {
  for (int i = 0; i < 500; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

}  // namespace kdom
