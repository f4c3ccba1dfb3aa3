// BlockQueueWorker: the backend thread serving one virtio-blk queue. Requests are planned by
// BlockDevice and their reads, writes and flushes submitted to the image through io_uring, so
// up to a queue's worth of requests are in flight at once; completions write the status byte
// and return the chain to the driver. A read the page cache holds whole is copied at once in
// the thread instead. A flush starts only once every request taken before it has completed,
// so everything the guest wrote before the flush is on disk when it hears the flush is done.
// Requests wait for the queue's rate limiter (an io_uring timeout, no busy waiting). Where
// io_uring cannot be set up (disabled on the host), the worker serves requests synchronously
// in its thread and says so once.
// With a poll window (`--disk ...,poll=US`), a worker that runs out of work keeps watching the
// available ring and its completions for a while, with the driver's notifications turned off,
// before it sleeps: a busy queue then costs the guest no VM exit per request (PollWindow adapts
// the window to how soon work comes).
#pragma once

#include <linux/time_types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "base/standby_thread.h"
#include "base/unique_fd.h"
#include "devices/poll_window.h"
#include "devices/rate_limiter.h"
#include "devices/virtio/block.h"

namespace kdom {
class IoUring;
}

namespace kdom::devices::virtio {

class BlockQueueWorker {
 public:
  struct Context {
    const GuestMemory& memory;
    std::shared_ptr<Virtqueue> queue;
    uint16_t index = 0;
    const BlockDevice& device;
    QueueInterrupt interrupt;  // called with `index` after used entries were added
    DeviceFailure failure;     // called once if the queue is broken; the worker then stops serving
    RateLimit rate_limit;
    int notifier = -1;  // the queue's ioeventfd, waited on as well as kick() (not owned)
    PollSettings poll;  // the adaptive poll window; max zero: never poll
    // A request taken from the ring before (held by a stopped worker, or by a saved state),
    // served before anything else. Its head must be inside the queue.
    std::optional<uint16_t> first_head;
    // The rate limiter of a stopped worker of this queue, so a pause grants no fresh burst;
    // empty: a full one (when rate_limit limits anything).
    std::optional<RateLimiter> limiter;
    // A thread started ahead to serve the queue in (BlockDevice::prepare_activation); none:
    // the worker starts its own.
    std::unique_ptr<StandbyThread> thread;
  };

  // Starts the thread (or hands the work to context.thread), which serves `first_head`, then
  // whatever is available already.
  explicit BlockQueueWorker(Context context);
  // Stops as stop() does.
  ~BlockQueueWorker();
  BlockQueueWorker(const BlockQueueWorker&) = delete;
  BlockQueueWorker& operator=(const BlockQueueWorker&) = delete;

  // The driver notified the queue: wake the thread (cheap, any thread).
  void kick();

  // Stops taking requests, waits for those in flight to complete (their used entries and
  // interrupt raised), joins the thread. Afterwards the worker touches nothing; what it took
  // and did not start is held_head(). Idempotent.
  void stop();
  // After stop(): the request taken from the ring but not started (a flush that waited for
  // requests in flight, or one the rate limiter held back), to be served by the next worker.
  std::optional<uint16_t> held_head() const;
  // After stop(): the rate limiter, for the next worker of this queue.
  std::optional<RateLimiter> take_limiter() { return std::move(limiter_); }

 private:
  struct InFlight {
    uint16_t head = 0;
    uint64_t status_gpa = 0;
    BlockPlan plan;
    std::chrono::steady_clock::time_point started;
  };
  // A request taken from the queue but not started: a flush waiting for earlier requests, or
  // one the rate limiter holds back. The worker takes no more until it starts.
  struct Held {
    uint16_t head = 0;
    uint64_t status_gpa = 0;
    BlockPlan plan;
  };

  void run();
  void run_with(IoUring* ring);
  // Tells the transport (context_.failure) that the queue broke, naming disk and queue.
  void report_failure(const std::string& what) const;
  // Submits what serve() queued, then, if the poll window is open, watches for completions
  // and available requests (notifications off) until one shows up (true) or the window ends.
  bool poll_for_work(IoUring& ring);
  // Back from polling: notifications on; returns whether requests came in meanwhile.
  bool stop_polling();
  // Takes available requests until the queue is empty, the rate limiter says wait, or every
  // slot is in flight; the first head (context_.first_head) comes first.
  void serve(IoUring* ring);
  // Serves `first_head` again from the descriptor table; false when it is held back.
  bool take_first_head(IoUring* ring);
  // Starts or holds back a chain taken from the queue; false when it is held back (the
  // worker then takes no more).
  bool take(IoUring* ring, const DescriptorChain& chain);
  bool in_flight() const;
  // Whether `plan` must be held back now; takes its rate-limit tokens when it need not.
  bool must_wait(IoUring* ring, const BlockPlan& plan);
  // Starts one request: answered at once, run synchronously, or submitted to `ring`.
  void start(IoUring* ring, uint16_t head, uint64_t status_gpa, BlockPlan plan);
  // A read whose data is all in the page cache, done at once in this thread: one system call,
  // where io_uring takes a submission and a completion (which do the same underneath). Large
  // ones too: a copy in this thread measured quicker than one handed to io_uring's workers.
  // Returns whether the read is done; a read the page cache holds only the start of is cut
  // down to the rest, for io_uring.
  bool read_from_page_cache(BlockPlan& plan);
  void complete(uint32_t slot, int result);
  void finish(uint16_t head, uint64_t status_gpa, uint8_t status, uint32_t bytes_written);
  // Counts a request done (BlockDevice::counters), `started` when it was taken.
  void count(const BlockPlan& plan, uint8_t status, std::chrono::steady_clock::time_point started) const;
  void arm_poll(IoUring& ring, int fd, uint64_t tag);
  // Wakes the thread when the rate limiter has the tokens for a request of `cost_bytes`.
  void arm_timer(IoUring& ring, uint64_t cost_bytes);

  Context context_;
  UniqueFd kick_fd_;
  std::atomic<bool> stopping_{false};
  std::optional<RateLimiter> limiter_;

  // Owned by the worker thread.
  std::vector<InFlight> slots_;
  std::vector<uint32_t> free_slots_;
  std::optional<Held> held_;
  bool timer_armed_ = false;
  bool used_added_ = false;
  bool page_cache_reads_ = true;  // read_from_page_cache works on this file
  bool polling_ = false;  // notifications are off while the worker polls
  PollWindow poll_window_;
  __kernel_timespec timer_{};

  std::unique_ptr<StandbyThread> thread_;
};

}  // namespace kdom::devices::virtio
