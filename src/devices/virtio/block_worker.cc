// BlockQueueWorker: one virtio-blk queue served by a thread, with io_uring (or synchronously
// where the host has no io_uring).
#include "devices/virtio/block_worker.h"

#include <poll.h>
#include <sys/uio.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <mutex>

#include "base/error.h"
#include "base/eventfd.h"
#include "base/io_uring.h"
#include "base/log.h"

namespace kdom::devices::virtio {
namespace {

constexpr uint64_t kKickTag = UINT64_MAX;
constexpr uint64_t kTimerTag = UINT64_MAX - 1;
constexpr uint64_t kNotifierTag = UINT64_MAX - 2;

// `iov` less its first `bytes` bytes.
std::vector<iovec> skip_bytes(const std::vector<iovec>& iov, uint64_t bytes) {
  std::vector<iovec> rest;
  for (const iovec& piece : iov) {
    if (bytes >= piece.iov_len) {
      bytes -= piece.iov_len;
      continue;
    }
    rest.push_back({static_cast<uint8_t*>(piece.iov_base) + bytes, piece.iov_len - bytes});
    bytes = 0;
  }
  return rest;
}

}  // namespace

BlockQueueWorker::BlockQueueWorker(Context context)
    : context_(std::move(context)),
      kick_fd_(check_syscall(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd for a virtio-blk queue")),
      poll_window_(context_.poll) {
  if (context_.limiter)
    limiter_ = std::move(context_.limiter);
  else if (!context_.rate_limit.unlimited())
    limiter_.emplace(context_.rate_limit, RateClock::now());
  const uint16_t size = context_.queue->config().size;
  slots_.resize(size);
  for (uint32_t slot = size; slot > 0; --slot) free_slots_.push_back(slot - 1);
  thread_ = context_.thread ? std::move(context_.thread) : std::make_unique<StandbyThread>();
  thread_->run([this] { run(); });
}

BlockQueueWorker::~BlockQueueWorker() { stop(); }

void BlockQueueWorker::stop() {
  if (!thread_) return;
  stopping_ = true;
  kick();
  thread_->join();
  thread_.reset();
}

std::optional<uint16_t> BlockQueueWorker::held_head() const {
  // A first head the thread never came to (it stopped at once) is still held too.
  if (context_.first_head) return context_.first_head;
  if (held_) return held_->head;
  return std::nullopt;
}

void BlockQueueWorker::kick() {
  signal_eventfd(kick_fd_.get());
}

void BlockQueueWorker::run() {
  std::unique_ptr<IoUring> ring;
  try {
    // Room for a request per slot, the two polls (kick, ioeventfd) and the rate-limit timer.
    ring = std::make_unique<IoUring>(std::bit_ceil(static_cast<unsigned>(slots_.size()) + 3));
  } catch (const Error& error) {
    static std::once_flag said;
    std::call_once(said, [&] {
      log_line(std::string("virtio-blk: io_uring is not available (") + error.what() +
               "); serving disk requests synchronously");
    });
  }
  try {
    run_with(ring.get());
  } catch (const std::exception& error) {
    context_.queue->mark_broken();
    report_failure(error.what());
  }
}

void BlockQueueWorker::report_failure(const std::string& what) const {
  if (context_.failure)
    context_.failure("virtio-blk '" + context_.device.path() + "' queue " + std::to_string(context_.index) + ": " +
                     what);
}

void BlockQueueWorker::run_with(IoUring* ring) {
  auto interrupt_if_used = [this] {
    if (!used_added_) return;
    used_added_ = false;
    if (context_.interrupt) context_.interrupt(context_.index);
  };
  const int notifier = context_.notifier;
  if (ring != nullptr) {
    arm_poll(*ring, kick_fd_.get(), kKickTag);
    if (notifier >= 0) arm_poll(*ring, notifier, kNotifierTag);
  }
  serve(ring);
  interrupt_if_used();
  for (;;) {
    if (stopping_ && !in_flight()) {
      stop_polling();  // leave the ring as a driver expects it: notifications on
      return;
    }
    bool kicked = false;
    bool notified = false;
    if (ring != nullptr) {
      const auto idle_since = std::chrono::steady_clock::now();
      if (!poll_for_work(*ring) && !stop_polling()) ring->submit_and_wait();
      poll_window_.record(std::chrono::steady_clock::now() - idle_since);
      ring->for_each_completion([&](uint64_t tag, int result) {
        if (tag == kKickTag)
          kicked = true;
        else if (tag == kNotifierTag)
          notified = true;
        else if (tag == kTimerTag)
          timer_armed_ = false;
        else
          complete(static_cast<uint32_t>(tag), result);
      });
      if (kicked) {
        drain_eventfd(kick_fd_.get());
        if (!stopping_) arm_poll(*ring, kick_fd_.get(), kKickTag);
      }
      if (notified) {
        drain_eventfd(notifier);
        if (!stopping_) arm_poll(*ring, notifier, kNotifierTag);
      }
    } else {
      int timeout_ms = -1;
      if (held_ && limiter_) {
        const auto wait = limiter_->wait_for(held_->plan.cost_bytes(), RateClock::now());
        timeout_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wait).count());
      }
      pollfd waiting[2] = {{kick_fd_.get(), POLLIN, 0}, {notifier, POLLIN, 0}};
      if (::poll(waiting, notifier >= 0 ? 2 : 1, timeout_ms) > 0) {
        if (waiting[0].revents) drain_eventfd(kick_fd_.get());
        if (notifier >= 0 && waiting[1].revents) drain_eventfd(notifier);
      }
    }
    if (!stopping_) serve(ring);
    interrupt_if_used();
  }
}

bool BlockQueueWorker::poll_for_work(IoUring& ring) {
  ring.submit();
  if (ring.has_completions()) return true;  // done inline (page cache) already
  // Nothing to poll for while a request is held back (rate limit, flush order). Requests still
  // in flight are being done by io_uring's workers or the disk: a poller would only take a CPU
  // they may need, so sleep until they complete.
  const PollWindow::Duration window = poll_window_.current();
  if (window == PollWindow::Duration::zero() || context_.queue->broken() || held_ || stopping_ || in_flight())
    return false;
  Virtqueue& queue = *context_.queue;
  if (!polling_) {
    queue.set_notifications(false);
    polling_ = true;
  }
  auto last_look = std::chrono::steady_clock::now();
  const auto deadline = last_look + window;
  for (;;) {
    if (ring.has_completions() || stopping_ || (!free_slots_.empty() && queue.has_available())) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_look > poll_window_.preemption_gap()) {
      poll_window_.preempted();  // the CPU is wanted elsewhere: sleep instead
      return false;
    }
    if (now >= deadline) return false;
    last_look = now;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

bool BlockQueueWorker::stop_polling() {
  if (!polling_) return false;
  polling_ = false;
  return context_.queue->set_notifications(true);
}

bool BlockQueueWorker::in_flight() const { return free_slots_.size() != slots_.size(); }

bool BlockQueueWorker::must_wait(IoUring* ring, const BlockPlan& plan) {
  // A flush waits for every request before it to complete (their writes are then covered).
  if (plan.kind == BlockPlan::Kind::kFlush && in_flight()) return true;
  if (limiter_ && !limiter_->try_take(plan.cost_bytes(), RateClock::now())) {
    if (ring != nullptr) arm_timer(*ring, plan.cost_bytes());
    return true;
  }
  return false;
}

void BlockQueueWorker::serve(IoUring* ring) {
  if (context_.queue->broken()) return;
  if (context_.first_head && !take_first_head(ring)) return;
  if (held_) {
    if (must_wait(ring, held_->plan)) return;
    Held next = std::move(*held_);
    held_.reset();
    start(ring, next.head, next.status_gpa, std::move(next.plan));
  }
  Virtqueue& queue = *context_.queue;
  while (ring == nullptr || !free_slots_.empty()) {
    uint32_t rejected = 0;
    std::optional<DescriptorChain> chain;
    try {
      chain = queue.next_request(&rejected);
    } catch (const VirtqueueError& error) {
      used_added_ = used_added_ || rejected > 0;
      report_failure(error.what());
      return;
    }
    used_added_ = used_added_ || rejected > 0;
    if (!chain || !take(ring, *chain)) return;
  }
}

bool BlockQueueWorker::take_first_head(IoUring* ring) {
  const uint16_t head = *context_.first_head;
  context_.first_head.reset();
  std::optional<DescriptorChain> chain;
  try {
    chain = context_.queue->chain_at(head);
  } catch (const VirtqueueError& error) {
    if (!error.head()) {
      report_failure(error.what());
      return false;
    }
    context_.queue->push_used(head, 0);  // malformed now: failed, as pop's callers fail one
    used_added_ = true;
    return true;
  }
  return take(ring, *chain);
}

bool BlockQueueWorker::take(IoUring* ring, const DescriptorChain& chain) {
  const GuestMemory& memory = context_.memory;
  const BlockRequest request = parse_block_request(memory, chain);
  if (request.malformed) {
    if (request.status_gpa) memory.write_object<uint8_t>(*request.status_gpa, kBlockStatusIoErr);
    context_.queue->push_used(chain.head, 0);
    used_added_ = true;
    return true;
  }
  BlockPlan plan = context_.device.plan(memory, chain, request);
  if (must_wait(ring, plan)) {
    held_ = Held{chain.head, *request.status_gpa, std::move(plan)};
    return false;
  }
  start(ring, chain.head, *request.status_gpa, std::move(plan));
  return true;
}

void BlockQueueWorker::start(IoUring* ring, uint16_t head, uint64_t status_gpa, BlockPlan plan) {
  const bool asynchronous = ring != nullptr && (plan.kind == BlockPlan::Kind::kRead ||
                                                plan.kind == BlockPlan::Kind::kWrite ||
                                                plan.kind == BlockPlan::Kind::kFlush);
  const auto started = std::chrono::steady_clock::now();
  if (!asynchronous) {
    const uint8_t status = context_.device.run_sync(plan);
    finish(head, status_gpa, status, status == kBlockStatusOk ? plan.bytes_written : 0);
    count(plan, status, started);
    return;
  }
  if (read_from_page_cache(plan)) {
    finish(head, status_gpa, kBlockStatusOk, plan.bytes_written);
    count(plan, kBlockStatusOk, started);
    return;
  }
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  InFlight& request = slots_[slot];
  request = InFlight{head, status_gpa, std::move(plan), started};
  const int fd = context_.device.disk().fd();
  io_uring_sqe* sqe = ring->next_sqe();
  const auto count = static_cast<unsigned>(request.plan.buffers.size());
  switch (request.plan.kind) {
    case BlockPlan::Kind::kRead:
      io_uring_prep_readv(sqe, fd, request.plan.buffers.data(), count, request.plan.offset);
      break;
    case BlockPlan::Kind::kWrite:
      io_uring_prep_writev(sqe, fd, request.plan.buffers.data(), count, request.plan.offset);
      break;
    default:
      io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
      break;
  }
  // No IOSQE_ASYNC: io_uring then does at once, inside the submit, what needs no waiting (a
  // write into the page cache). Handing large transfers to its workers to run in parallel
  // measured slower (seq128k qd32, 2-CPU host): their wake-ups cost more than they shared out.
  io_uring_sqe_set_data64(sqe, slot);
}

bool BlockQueueWorker::read_from_page_cache(BlockPlan& plan) {
  if (!page_cache_reads_ || plan.kind != BlockPlan::Kind::kRead) return false;
  // RWF_NOWAIT: fails rather than wait for the disk, or stops short where the page cache does.
  const ssize_t done = ::preadv2(context_.device.disk().fd(), plan.buffers.data(),
                                 static_cast<int>(plan.buffers.size()), static_cast<off_t>(plan.offset), RWF_NOWAIT);
  if (done < 0 && errno == EOPNOTSUPP) page_cache_reads_ = false;  // not on this file: stop trying
  if (done <= 0) return false;
  if (static_cast<uint64_t>(done) == plan.length) return true;
  // The rest is left to io_uring (plan.bytes_written still counts the whole read).
  plan.buffers = skip_bytes(plan.buffers, static_cast<uint64_t>(done));
  plan.offset += static_cast<uint64_t>(done);
  plan.length -= static_cast<uint64_t>(done);
  return false;
}

void BlockQueueWorker::complete(uint32_t slot, int result) {
  if (slot >= slots_.size()) return;
  InFlight& request = slots_[slot];
  const BlockPlan& plan = request.plan;
  uint8_t status = kBlockStatusOk;
  if (result < 0) {
    status = kBlockStatusIoErr;
  } else if (plan.kind != BlockPlan::Kind::kFlush && static_cast<uint64_t>(result) < plan.length) {
    // A short transfer: do the rest synchronously (EIO at the end of the file).
    const std::vector<iovec> rest = skip_bytes(plan.buffers, static_cast<uint64_t>(result));
    const BlockDiskFile& disk = context_.device.disk();
    const uint64_t offset = plan.offset + static_cast<uint64_t>(result);
    const int err = plan.kind == BlockPlan::Kind::kRead ? disk.read(offset, rest) : disk.write(offset, rest);
    if (err != 0) status = kBlockStatusIoErr;
  }
  finish(request.head, request.status_gpa, status, status == kBlockStatusOk ? plan.bytes_written : 0);
  count(plan, status, request.started);
  request.plan.buffers.clear();
  free_slots_.push_back(slot);
}

void BlockQueueWorker::finish(uint16_t head, uint64_t status_gpa, uint8_t status, uint32_t bytes_written) {
  context_.memory.write_object<uint8_t>(status_gpa, status);
  context_.queue->push_used(head, bytes_written + 1);
  used_added_ = true;
}

void BlockQueueWorker::count(const BlockPlan& plan, uint8_t status,
                             std::chrono::steady_clock::time_point started) const {
  BlockCounters::Kind kind = BlockCounters::Kind::kOther;
  if (plan.kind == BlockPlan::Kind::kRead) kind = BlockCounters::Kind::kRead;
  if (plan.kind == BlockPlan::Kind::kWrite) kind = BlockCounters::Kind::kWrite;
  if (plan.kind == BlockPlan::Kind::kFlush) kind = BlockCounters::Kind::kFlush;
  const auto latency = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  context_.device.counters().record(kind, status == kBlockStatusOk ? plan.length : 0, status == kBlockStatusOk,
                                    static_cast<uint64_t>(latency.count()));
}

void BlockQueueWorker::arm_poll(IoUring& ring, int fd, uint64_t tag) {
  io_uring_sqe* sqe = ring.next_sqe();
  io_uring_prep_poll_add(sqe, fd, POLLIN);
  io_uring_sqe_set_data64(sqe, tag);
}

void BlockQueueWorker::arm_timer(IoUring& ring, uint64_t cost_bytes) {
  // Armed for the request about to be held too (held_ is set only after must_wait says so):
  // otherwise it would wait for the next notification instead of the tokens.
  if (timer_armed_) return;
  const auto wait = std::max(limiter_->wait_for(cost_bytes, RateClock::now()),
                             std::chrono::nanoseconds(1000));
  timer_.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(wait).count();
  timer_.tv_nsec = (wait % std::chrono::seconds(1)).count();
  io_uring_sqe* sqe = ring.next_sqe();
  io_uring_prep_timeout(sqe, &timer_, 0, 0);
  io_uring_sqe_set_data64(sqe, kTimerTag);
  timer_armed_ = true;
}

}  // namespace kdom::devices::virtio
