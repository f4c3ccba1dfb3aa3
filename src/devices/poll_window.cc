// PollWindow: growing, shrinking and closing the adaptive polling window.
#include "devices/poll_window.h"

#include <algorithm>

namespace kdom::devices {

void PollWindow::record(Duration waited) {
  if (hold_off_ > 0) {
    --hold_off_;
    return;
  }
  if (waited <= current_) return;  // polling found it: keep the window
  if (waited > settings_.max) {
    // Work came later than any window we would poll for: polling was wasted.
    current_ /= 2;
    if (current_ < kFirst) current_ = Duration::zero();
    return;
  }
  // A window this long would have caught it: grow, by doubling at least.
  current_ = std::min(settings_.max, std::max({current_ * 2, kFirst, waited}));
}

void PollWindow::preempted() {
  current_ = Duration::zero();
  hold_off_ = next_hold_off_;
  next_hold_off_ = std::min(next_hold_off_ * 2, kMaxHoldOff);
}

}  // namespace kdom::devices
