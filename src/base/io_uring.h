// IoUring: sole owner of an io_uring instance (liburing), torn down when the owner goes away,
// with the few calls a device backend needs: a free submission entry, submission (waiting or
// not), and a walk over the ready completions.
#pragma once

#include <liburing.h>

namespace kdom {

class IoUring {
 public:
  // Sets up a ring of `entries` submission entries; throws SystemError (e.g. ENOSYS or EPERM
  // where io_uring is disabled on the host).
  explicit IoUring(unsigned entries);
  ~IoUring();
  IoUring(const IoUring&) = delete;
  IoUring& operator=(const IoUring&) = delete;

  // A free submission entry; when the ring is full, the queued entries are submitted first.
  io_uring_sqe* next_sqe();
  // Submits what is queued and waits until at least one completion is ready.
  void submit_and_wait();
  // Submits what is queued without waiting.
  void submit();
  // Whether completions are ready (no system call: for a thread that polls).
  bool has_completions() { return io_uring_cq_ready(&ring_) > 0; }
  // Calls `handle(user_data, res)` for every ready completion and marks each one seen.
  template <typename Handler>
  void for_each_completion(Handler&& handle) {
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
      const auto user_data = cqe->user_data;
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      handle(user_data, res);
    }
  }

 private:
  io_uring ring_{};
};

}  // namespace kdom
