// IoUring set-up, submission and waiting.
#include "base/io_uring.h"

#include <cerrno>

#include "base/error.h"

namespace kdom {

IoUring::IoUring(unsigned entries) {
  const int err = io_uring_queue_init(entries, &ring_, 0);
  if (err < 0) throw SystemError("io_uring_queue_init", -err);
}

IoUring::~IoUring() { io_uring_queue_exit(&ring_); }

io_uring_sqe* IoUring::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    submit();
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void IoUring::submit() {
  for (;;) {
    const int result = io_uring_submit(&ring_);
    if (result >= 0 || result == -EBUSY || result == -EAGAIN) return;  // full: reap, then retry later
    if (result != -EINTR) throw SystemError("io_uring_submit", -result);
  }
}

void IoUring::submit_and_wait() {
  for (;;) {
    const int result = io_uring_submit_and_wait(&ring_, 1);
    if (result >= 0) return;
    // EBUSY/EAGAIN: the completion queue is full; the caller reaps and comes back.
    if (result == -EINTR || result == -EBUSY || result == -EAGAIN) {
      if (io_uring_cq_ready(&ring_) > 0 || result == -EINTR) return;
      continue;
    }
    throw SystemError("io_uring_submit_and_wait", -result);
  }
}

}  // namespace kdom
