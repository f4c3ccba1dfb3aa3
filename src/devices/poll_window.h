// PollWindow: how long a backend thread that has run out of work keeps looking for more before
// it goes to sleep (adaptive polling). Sleeping makes the next request pay for a notification
// (a VM exit) and a wake-up; polling costs a host CPU while it lasts. The window grows while
// work keeps arriving soon after the thread runs dry, and shrinks when it comes late, so a busy
// queue is polled and an idle one costs nothing. Polling only pays while the thread has a CPU
// to itself: when the poller finds it was preempted (the CPU is wanted, perhaps by the very
// vCPU it waits for), the window closes and stays closed for a while, longer each time.
// Durations are passed in: plain arithmetic that unit tests drive directly.
#pragma once

#include <chrono>
#include <cstdint>

namespace kdom::devices {

// How a queue polls: the longest window (zero: never), and the gap between two looks at the
// work that counts as preemption (tests that cannot promise a CPU make it long).
struct PollSettings {
  std::chrono::nanoseconds max{0};
  std::chrono::nanoseconds preemption_gap = std::chrono::microseconds(30);
};

class PollWindow {
 public:
  using Duration = std::chrono::nanoseconds;
  // The smallest window tried after polling was off, and the one below which it stops.
  static constexpr Duration kFirst = std::chrono::microseconds(4);
  // After the first preemption, this many waits pass before the window may open again;
  // each further preemption doubles it, up to kMaxHoldOff.
  static constexpr uint32_t kFirstHoldOff = 256;
  static constexpr uint32_t kMaxHoldOff = 1u << 14;

  explicit PollWindow(PollSettings settings) : settings_(settings) {}

  Duration current() const { return current_; }
  // A gap this long between two looks at the work means the poller lost its CPU.
  Duration preemption_gap() const { return settings_.preemption_gap; }

  // The thread found work `waited` after it ran dry (its polling included).
  void record(Duration waited);
  // The poller was preempted while it polled.
  void preempted();

 private:
  PollSettings settings_;
  Duration current_{0};
  uint32_t hold_off_ = 0;  // waits to let pass before the window may open again
  uint32_t next_hold_off_ = kFirstHoldOff;
};

}  // namespace kdom::devices
