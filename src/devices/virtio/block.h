// virtio-blk (virtio 1.x section 5.2): a raw disk image file served to the guest, independent
// of the transport. BlockDiskFile holds the synchronous I/O on the image; BlockDevice
// implements VirtioDevice: the config space, the features, and turning each request into a
// BlockPlan (a transfer, a flush, or an answer). Once the driver is ready, every queue is
// served by its own BlockQueueWorker thread (block_worker.h) with io_uring; process_queue
// serves a queue synchronously in the caller's thread (unit tests, fuzzing).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/standby_thread.h"
#include "base/unique_fd.h"
#include "devices/poll_window.h"
#include "devices/rate_limiter.h"
#include "devices/virtio/block_counters.h"
#include "devices/virtio/block_request.h"
#include "devices/virtio/virtio_device.h"

namespace kdom::devices::virtio {

struct BlockDiskConfig {
  std::string path;
  bool read_only = false;
  std::string id;           // serial returned by GET_ID, at most 20 bytes
  uint16_t num_queues = 1;  // > 1 offers VIRTIO_BLK_F_MQ
  RateLimit rate_limit;     // per queue: bytes and requests per second (0: unlimited)
  PollSettings poll;        // how each queue's worker polls before it sleeps (max zero: never)
  bool shared = false;      // other domains or programs may write to the image too
  // Take the image lock (image_lock.h) when the image is opened. Not for an incoming live
  // migration's disks: the source's VMM holds their locks until it hands them over, and the
  // domain takes them then (BlockDevice::hold_image_lock).
  bool lock_image = true;
};

// What serving one request takes, decided before any disk I/O.
struct BlockPlan {
  enum class Kind {
    kDone,      // answered already (GET_ID, bad requests): `status` and `bytes_written`
    kRead,      // read `length` bytes at `offset` into `buffers`
    kWrite,     // write `length` bytes at `offset` from `buffers`
    kFlush,     // make every completed write durable
    kSegments,  // DISCARD / WRITE_ZEROES: `segments`, all checked already
  };
  Kind kind = Kind::kDone;
  uint8_t status = kBlockStatusOk;
  uint32_t bytes_written = 0;  // data bytes the device writes into the guest's buffers
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<iovec> buffers;
  bool discard = false;  // kSegments: discard rather than write zeroes
  std::vector<BlockDiscardSegment> segments;
  // Bytes the rate limiter counts for this request.
  uint64_t cost_bytes() const { return kind == Kind::kRead || kind == Kind::kWrite ? length : 0; }
};

class BlockQueueWorker;

// The disk image: every read, write, flush and discard the device does goes through here.
// Methods return 0 or an errno value; they never throw for I/O failures.
class BlockDiskFile {
 public:
  // Opens the image (read-only or read-write) and, with `lock`, takes its image lock; throws
  // Error naming the file and the problem (a lock another process holds among them).
  static BlockDiskFile open(const std::string& path, bool read_only, bool shared = false, bool lock = true);

  // The image lock: whether it is held, taking it (Error naming the image when another process
  // holds one that conflicts; then none is left behind) and letting it go. Neither does
  // anything when it is so already.
  bool locked() const { return locked_; }
  void lock();
  void unlock();

  uint64_t size_bytes() const { return size_bytes_; }
  bool read_only() const { return read_only_; }
  // For asynchronous I/O engines (io_uring) that submit on the image themselves.
  int fd() const { return fd_.get(); }

  // Reads/writes exactly the iovecs' total length at `offset`; EIO on a short transfer.
  int read(uint64_t offset, std::span<const iovec> buffers) const;
  int write(uint64_t offset, std::span<const iovec> buffers) const;
  // Makes every completed write durable (fdatasync).
  int flush() const;
  // Deallocates [offset, offset+length) if the file system can; a hint, so "cannot" is 0.
  int discard(uint64_t offset, uint64_t length) const;
  // Makes [offset, offset+length) read back as zeroes; `unmap` allows deallocating it.
  int write_zeroes(uint64_t offset, uint64_t length, bool unmap) const;

 private:
  BlockDiskFile(UniqueFd fd, std::string what, uint64_t size_bytes, bool read_only, bool shared)
      : fd_(std::move(fd)), what_(std::move(what)), size_bytes_(size_bytes), read_only_(read_only), shared_(shared) {}
  int write_zero_bytes(uint64_t offset, uint64_t length) const;

  UniqueFd fd_;
  std::string what_;  // "disk image 'PATH'", for messages
  uint64_t size_bytes_ = 0;
  bool read_only_ = false;
  bool shared_ = false;
  bool locked_ = false;
};

class BlockDevice : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Data segments per request: the queue size less the header and status descriptors.
  static constexpr uint32_t kSegMax = kQueueSize - 2;
  static constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per segment
  static constexpr uint32_t kMaxDiscardSegments = 32;
  static constexpr uint32_t kDiscardSectorAlignment = 8;  // 4 KiB, the usual hole granularity
  static constexpr uint32_t kMaxWriteZeroesSectors = 1u << 22;
  static constexpr uint32_t kMaxWriteZeroesSegments = 32;

  // Opens the disk; throws Error for a bad image or config (id too long, 0 queues).
  explicit BlockDevice(const BlockDiskConfig& config);
  ~BlockDevice() override;

  // Capacity in 512-byte sectors.
  uint64_t capacity() const { return capacity_; }

  DeviceType type() const override { return DeviceType::kBlock; }
  uint64_t offered_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  void activate(const GuestMemory& memory, uint64_t negotiated_features,
                std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                ConfigInterrupt config_interrupt) override;
  // Wakes the queue's worker thread; no I/O happens in the caller's thread. (In the VMM the
  // workers wait on the notification eventfds themselves, MMIO-exit notifications included.)
  // A worker whose queue is broken
  // (VirtqueueError with no head) stops and reports through the failure handler, so the
  // transport sets DEVICE_NEEDS_RESET.
  void notify_queue(uint16_t queue_index) override;
  // Stops the workers after the requests they have in flight complete.
  void reset() override;
  void set_failure_handler(DeviceFailure failure) override;
  // Each queue's worker waits on the queue's ioeventfd itself.
  bool waits_on_notifiers() const override { return true; }
  void set_queue_notifiers(std::vector<int> eventfds) override;

  // The pause point: stops every worker once its requests in flight have completed (used
  // entries pushed, interrupts raised); a request a worker took and had not started (held for
  // the rate limit or a flush's turn) is kept, by head, and served first by resume() or, after
  // a restore, by activate(). Notifications meanwhile are not lost: resume's workers look at
  // their rings first.
  void quiesce() override;
  void resume() override;
  // {"held": [{"queue": Q, "head": H}, ...]}: the requests taken from queue Q's ring and not
  // started, at most one per queue.
  nlohmann::json save_state() const override;
  // Checks every queue index (< num_queues), head (< kQueueSize) and that no queue appears
  // twice; activate() then checks the heads against the queues' sizes (a StateError, before
  // anything starts) and serves them first.
  void load_state(const nlohmann::json& state) override;
  // A thread per queue, started now, for the workers activate() starts.
  void prepare_activation() override;

  struct QueueResult {
    bool interrupt = false;                  // used entries added (the transport asks the driver)
    std::optional<std::string> queue_error;  // the queue is broken: the device needs reset
  };
  // Serves every available request of `queue` against guest `memory` synchronously, in the
  // caller's thread, without rate limits.
  QueueResult process_queue(const GuestMemory& memory, Virtqueue& queue) const;

  // Checks a parsed, well-formed request and decides how to serve it; answers GET_ID and
  // every bad request (out of range, read-only, misaligned) at once.
  BlockPlan plan(const GuestMemory& memory, const DescriptorChain& chain, const BlockRequest& request) const;
  // Does a plan's I/O synchronously; returns the status byte for the guest.
  uint8_t run_sync(const BlockPlan& plan) const;
  const BlockDiskFile& disk() const { return disk_; }
  // The image lock, handed over in a live migration (the domain's disk-locks op). hold: takes
  // it (Error naming the image when another process holds it), then, when it was not held,
  // drops the image's pages from this host's cache: on shared storage the other host may have
  // written to the image since this one opened it, and what this host read before must not be
  // served. release: lets it go (the caller has flushed the image and keeps the device from
  // writing).
  bool image_locked() const { return disk_.locked(); }
  void hold_image_lock();
  void release_image_lock();
  // What it has served (its workers count as they complete requests).
  BlockCounters& counters() const { return counters_; }
  const std::string& path() const { return config_.path; }

 private:
  BlockPlan plan_segments(const GuestMemory& memory, const DescriptorChain& chain, const BlockRequest& request) const;
  // Whether [sector, sector + sectors) lies inside the disk.
  bool in_range(uint64_t sector, uint64_t sectors) const;
  BlockConfigSpace config_space() const;

  // Starts one worker per queue present, each serving held_heads_[i] first.
  void start_workers_locked();

  // Serialises activation, reset and notifications: notifications arrive from the VMM's
  // event loop (ioeventfd) and from vCPU threads (MMIO), activation and reset from vCPUs.
  mutable std::mutex mutex_;
  BlockDiskConfig config_;
  BlockDiskFile disk_;
  mutable BlockCounters counters_;  // counting does not change what the device is
  uint64_t capacity_ = 0;
  DeviceFailure failure_;
  std::vector<int> notifiers_;  // per queue; not owned

  // Set by activate, cleared by reset: one worker per queue the driver enabled (none while
  // quiesced).
  std::vector<std::unique_ptr<BlockQueueWorker>> workers_;
  const GuestMemory* memory_ = nullptr;
  std::vector<std::shared_ptr<Virtqueue>> queues_;
  QueueInterrupt queue_interrupt_;
  bool quiesced_ = false;
  // Per queue: a request taken from the ring and not started, found by quiesce or given by
  // load_state, which the queue's next worker serves first. Indexed like config_.num_queues.
  std::vector<std::optional<uint16_t>> held_heads_;
  // Per queue: the rate limiters of the workers quiesce stopped, for resume's workers.
  std::vector<std::optional<RateLimiter>> limiters_;
  // Per queue: a thread prepare_activation started, for the queue's next worker.
  std::vector<std::unique_ptr<StandbyThread>> standby_threads_;
};

}  // namespace kdom::devices::virtio
