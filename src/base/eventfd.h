// Signalling an eventfd (KVM irqfds and ioeventfds, thread kicks): the one write every waker
// does. A counter that is already at its maximum is still signalled, so a failed write
// (EAGAIN on a non-blocking fd) loses nothing; EINTR is retried.
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

}  // namespace kdom
