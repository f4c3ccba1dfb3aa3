// Signalling an eventfd (KVM irqfds and ioeventfds, thread kicks) and draining one: the one
// write every waker does and the one read every waiter does. A counter that is already at its
// maximum is still signalled, so a failed write (EAGAIN on a non-blocking fd) loses nothing;
// EINTR is retried.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace kdom {

inline void signal_eventfd(int fd) {
  const uint64_t one = 1;
  while (::write(fd, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

// Resets the counter; returns whether it had been signalled (false: nothing to read, EAGAIN).
inline bool drain_eventfd(int fd) {
  uint64_t count = 0;
  ssize_t n;
  while ((n = ::read(fd, &count, sizeof(count))) < 0 && errno == EINTR) {
  }
  return n == static_cast<ssize_t>(sizeof(count));
}

}  // namespace kdom
