// virtio-blk (virtio 1.x section 5.2): a raw disk image file served to the guest, independent
// of the transport. BlockDiskFile holds all I/O on the image (synchronous pread/pwrite today,
// to be swapped for io_uring behind the same calls); BlockDevice implements VirtioDevice: the
// config space, the features, and request processing over one or more queues.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "devices/virtio/block_request.h"
#include "devices/virtio/virtio_device.h"

namespace kdom::devices::virtio {

struct BlockDiskConfig {
  std::string path;
  bool read_only = false;
  std::string id;           // serial returned by GET_ID, at most 20 bytes
  uint16_t num_queues = 1;  // > 1 offers VIRTIO_BLK_F_MQ
};

// The disk image: every read, write, flush and discard the device does goes through here.
// Methods return 0 or an errno value; they never throw for I/O failures.
class BlockDiskFile {
 public:
  // Opens the image (read-only or read-write); throws Error naming the file and the problem.
  static BlockDiskFile open(const std::string& path, bool read_only);

  uint64_t size_bytes() const { return size_bytes_; }
  bool read_only() const { return read_only_; }

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
  BlockDiskFile(UniqueFd fd, uint64_t size_bytes, bool read_only)
      : fd_(std::move(fd)), size_bytes_(size_bytes), read_only_(read_only) {}
  int write_zero_bytes(uint64_t offset, uint64_t length) const;

  UniqueFd fd_;
  uint64_t size_bytes_ = 0;
  bool read_only_ = false;
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
  // Processes the queue synchronously in the caller's thread: the VMM's device event loop
  // (ioeventfd), or a vCPU for a notification that came as an MMIO exit; io_uring completions
  // come later. Raises the queue's interrupt when it used chains (the transport asks the
  // driver whether it wants it). If the queue itself is broken (VirtqueueError with
  // no head) the queue is stopped and the VirtqueueError is rethrown, after any interrupt,
  // so the transport can set DEVICE_NEEDS_RESET.
  void notify_queue(uint16_t queue_index) override;
  void reset() override;

  struct QueueResult {
    bool interrupt = false;                  // used entries added (the transport asks the driver)
    std::optional<std::string> queue_error;  // the queue is broken: the device needs reset
  };
  // Serves every available request of `queue` against guest `memory`; no threads needed.
  QueueResult process_queue(const GuestMemory& memory, Virtqueue& queue) const;

 private:
  struct Completion {
    uint8_t status = kBlockStatusOk;
    uint32_t bytes_written = 0;  // data bytes written into the guest's buffers (status excluded)
  };
  Completion execute(const GuestMemory& memory, const DescriptorChain& chain, const BlockRequest& request) const;
  Completion execute_segments(const GuestMemory& memory, const DescriptorChain& chain,
                              const BlockRequest& request) const;
  // Whether [sector, sector + sectors) lies inside the disk.
  bool in_range(uint64_t sector, uint64_t sectors) const;
  BlockConfigSpace config_space() const;

  // Serialises activation, reset and queue processing: notifications arrive from the VMM's
  // event loop (ioeventfd) and from vCPU threads (MMIO), activation and reset from vCPUs.
  std::mutex mutex_;
  BlockDiskConfig config_;
  BlockDiskFile disk_;
  uint64_t capacity_ = 0;

  // Set by activate, cleared by reset.
  const GuestMemory* memory_ = nullptr;
  std::vector<std::shared_ptr<Virtqueue>> queues_;
  std::vector<bool> queue_broken_;
  QueueInterrupt queue_interrupt_;
  ConfigInterrupt config_interrupt_;
};

}  // namespace kdom::devices::virtio
