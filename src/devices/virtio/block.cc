// virtio-blk device: opening the image, config space and features, and planning requests
// (IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES); synchronous file I/O in BlockDiskFile.
#include "devices/virtio/block.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "devices/image_lock.h"
#include "devices/virtio/block_worker.h"
#include "snapshot/state_json.h"

namespace kdom::devices::virtio {
namespace {

// Whole transfer of `buffers` at `offset`, resuming after short transfers and EINTR. Reaching
// the end of the file (the image shrank under us) is EIO.
int transfer(int fd, bool write, uint64_t offset, std::span<const iovec> buffers) {
  std::vector<iovec> iov(buffers.begin(), buffers.end());
  size_t index = 0;
  while (index < iov.size()) {
    if (iov[index].iov_len == 0) {
      ++index;
      continue;
    }
    const int count = static_cast<int>(std::min<size_t>(iov.size() - index, IOV_MAX));
    const ssize_t done = write ? ::pwritev(fd, &iov[index], count, static_cast<off_t>(offset))
                               : ::preadv(fd, &iov[index], count, static_cast<off_t>(offset));
    if (done < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (done == 0) return EIO;
    offset += static_cast<uint64_t>(done);
    size_t left = static_cast<size_t>(done);
    while (left > 0) {
      if (left >= iov[index].iov_len) {
        left -= iov[index].iov_len;
        ++index;
      } else {
        iov[index].iov_base = static_cast<uint8_t*>(iov[index].iov_base) + left;
        iov[index].iov_len -= left;
        left = 0;
      }
    }
  }
  return 0;
}

bool unsupported(int err) { return err == EOPNOTSUPP || err == ENOSYS || err == EINVAL; }

}  // namespace

// --- BlockDiskFile ---------------------------------------------------------------------------

BlockDiskFile BlockDiskFile::open(const std::string& path, bool read_only, bool shared, bool lock) {
  const std::string what = "disk image '" + path + "'";
  const int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    switch (err) {
      case ENOENT:
        throw Error(what + " does not exist");
      case EACCES:
      case EPERM:
        throw Error(what + (read_only ? ": no permission to read it"
                                      : ": no permission to open it read-write (attach it read-only?)"));
      case EROFS:
        throw Error(what + " is on a read-only file system: it can only be attached read-only");
      case EISDIR:
        throw Error(what + " is a directory, not a disk image");
      default:
        throw SystemError(what + ": cannot open it" + (read_only ? "" : " read-write"), err);
    }
  }
  UniqueFd owned(fd);
  struct stat st {};
  check_syscall(::fstat(fd, &st), what + ": fstat");
  if (S_ISDIR(st.st_mode)) throw Error(what + " is a directory, not a disk image");
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    throw Error(what + " is neither a regular file nor a block device");
  // root may open a file without write permission read-write; honour the mode anyway, since a
  // read-only image is the user's way of saying "do not write to this".
  if (!read_only && S_ISREG(st.st_mode) && (st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0)
    throw Error(what + " is read-only (no write permission): attach it read-only");
  // Reads need not update the image's access time, and skipping the kernel's check saves 5-10%
  // of a 4 KiB page-cache read. Only the owner (or CAP_FOWNER) may ask: for others it stays on.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NOATIME);
  // lseek rather than st_size, which is 0 for block devices.
  const off_t end = check_syscall(::lseek(fd, 0, SEEK_END), what + ": cannot find its size");
  BlockDiskFile disk(std::move(owned), what, static_cast<uint64_t>(end), read_only, shared);
  if (lock) disk.lock();
  return disk;
}

void BlockDiskFile::lock() {
  if (locked_) return;
  try {
    lock_disk_image(fd_.get(), read_only_, shared_, what_);
  } catch (...) {
    // Some bytes may be locked by now: a refused image keeps none.
    unlock_disk_image(fd_.get(), what_);
    throw;
  }
  locked_ = true;
}

void BlockDiskFile::unlock() {
  if (!locked_) return;
  unlock_disk_image(fd_.get(), what_);
  locked_ = false;
}

int BlockDiskFile::read(uint64_t offset, std::span<const iovec> buffers) const {
  return transfer(fd_.get(), false, offset, buffers);
}

int BlockDiskFile::write(uint64_t offset, std::span<const iovec> buffers) const {
  if (read_only_) return EROFS;
  return transfer(fd_.get(), true, offset, buffers);
}

int BlockDiskFile::flush() const {
  while (::fdatasync(fd_.get()) < 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

int BlockDiskFile::discard(uint64_t offset, uint64_t length) const {
  if (read_only_) return EROFS;
  if (length == 0) return 0;
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) == 0)
    return 0;
  // Discard is a hint: a file system that cannot punch holes simply keeps the data.
  return unsupported(errno) ? 0 : errno;
}

int BlockDiskFile::write_zeroes(uint64_t offset, uint64_t length, bool unmap) const {
  if (read_only_) return EROFS;
  if (length == 0) return 0;
  const auto off = static_cast<off_t>(offset);
  const auto len = static_cast<off_t>(length);
  if (unmap) {
    if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return 0;
    if (!unsupported(errno)) return errno;
  }
  if (::fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return 0;
  if (!unsupported(errno)) return errno;
  return write_zero_bytes(offset, length);
}

int BlockDiskFile::write_zero_bytes(uint64_t offset, uint64_t length) const {
  static const std::array<uint8_t, 64 * 1024> kZeroes{};
  while (length > 0) {
    const uint64_t chunk = std::min<uint64_t>(length, kZeroes.size());
    const iovec piece{const_cast<uint8_t*>(kZeroes.data()), static_cast<size_t>(chunk)};
    if (const int err = transfer(fd_.get(), true, offset, std::span<const iovec>(&piece, 1))) return err;
    offset += chunk;
    length -= chunk;
  }
  return 0;
}

// --- BlockDevice -----------------------------------------------------------------------------

BlockDevice::BlockDevice(const BlockDiskConfig& config)
    : config_(config), disk_(BlockDiskFile::open(config.path, config.read_only, config.shared, config.lock_image)) {
  if (config.id.size() > kBlockIdBytes)
    throw Error("disk image '" + config.path + "': id '" + config.id + "' is longer than 20 bytes");
  if (config.num_queues == 0) throw Error("disk image '" + config.path + "': needs at least one queue");
  // The capacity is in whole 512-byte sectors: a trailing partial sector of the image is
  // rounded down, so the guest never sees (or writes) it.
  capacity_ = disk_.size_bytes() / kBlockSectorSize;
}

BlockDevice::~BlockDevice() = default;

void BlockDevice::hold_image_lock() {
  if (disk_.locked()) return;
  disk_.lock();
  // Once no one else may write: what this host cached of the image before is dropped. A hint
  // (a file system that keeps the pages is no error); the pages are clean, as this side has
  // not written since it let go, or ever.
  ::posix_fadvise(disk_.fd(), 0, 0, POSIX_FADV_DONTNEED);
}

void BlockDevice::release_image_lock() { disk_.unlock(); }

uint64_t BlockDevice::offered_features() const {
  uint64_t features = kFeatureVersion1 | kFeatureRingIndirectDesc | kFeatureRingEventIdx | kBlockFeatureSegMax |
                      kBlockFeatureBlkSize | kBlockFeatureFlush | kBlockFeatureMq;
  if (config_.read_only)
    features |= kBlockFeatureRo;
  else
    features |= kBlockFeatureDiscard | kBlockFeatureWriteZeroes;
  return features;
}

std::vector<uint16_t> BlockDevice::queue_max_sizes() const {
  return std::vector<uint16_t>(config_.num_queues, kQueueSize);
}

BlockConfigSpace BlockDevice::config_space() const {
  BlockConfigSpace space{};
  space.capacity = capacity_;
  space.seg_max = kSegMax;
  space.blk_size = kBlockSectorSize;
  space.num_queues = config_.num_queues;
  if (!config_.read_only) {
    space.max_discard_sectors = kMaxDiscardSectors;
    space.max_discard_seg = kMaxDiscardSegments;
    space.discard_sector_alignment = kDiscardSectorAlignment;
    space.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
    space.max_write_zeroes_seg = kMaxWriteZeroesSegments;
    space.write_zeroes_may_unmap = 1;
  }
  return space;
}

void BlockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  const BlockConfigSpace space = config_space();
  read_config_image({reinterpret_cast<const uint8_t*>(&space), sizeof(space)}, offset, data);
}

void BlockDevice::write_config(uint64_t, std::span<const uint8_t>) {
  // Nothing is writable: writeback is only writable with VIRTIO_BLK_F_CONFIG_WCE, not offered.
}

void BlockDevice::activate(const GuestMemory& memory, uint64_t, std::vector<std::shared_ptr<Virtqueue>> queues,
                           QueueInterrupt queue_interrupt, ConfigInterrupt) {
  if (queues.size() != config_.num_queues)
    throw Error("virtio-blk '" + config_.path + "': activated with " + std::to_string(queues.size()) +
                " queues, expected " + std::to_string(config_.num_queues));
  std::lock_guard lock(mutex_);
  held_heads_.resize(queues.size());
  // Heads a saved state holds are checked against the queues the driver set up, before
  // anything starts: the state may come from anywhere.
  for (size_t i = 0; i < queues.size(); ++i) {
    if (!held_heads_[i]) continue;
    const std::string what = "virtio-blk '" + config_.path + "'";
    if (!queues[i])
      throw snapshot::StateError("saved state of " + what + ": 'held' names queue " + std::to_string(i) +
                                 ", which the driver did not enable");
    if (*held_heads_[i] >= queues[i]->config().size)
      throw snapshot::StateError("saved state of " + what + ": 'held' head " + std::to_string(*held_heads_[i]) +
                                 " is outside queue " + std::to_string(i) + " of size " +
                                 std::to_string(queues[i]->config().size));
  }
  workers_.clear();
  memory_ = &memory;
  queues_ = std::move(queues);
  queue_interrupt_ = std::move(queue_interrupt);
  quiesced_ = false;
  limiters_.clear();
  start_workers_locked();
}

void BlockDevice::start_workers_locked() {
  workers_.clear();
  workers_.resize(queues_.size());
  held_heads_.resize(queues_.size());
  limiters_.resize(queues_.size());
  for (size_t i = 0; i < queues_.size(); ++i) {
    if (!queues_[i]) continue;
    BlockQueueWorker::Context context{*memory_,
                                      queues_[i],
                                      static_cast<uint16_t>(i),
                                      *this,
                                      queue_interrupt_,
                                      failure_,
                                      config_.rate_limit,
                                      i < notifiers_.size() ? notifiers_[i] : -1,
                                      config_.poll,
                                      held_heads_[i],
                                      std::move(limiters_[i]),
                                      i < standby_threads_.size() ? std::move(standby_threads_[i]) : nullptr};
    held_heads_[i].reset();
    limiters_[i].reset();
    workers_[i] = std::make_unique<BlockQueueWorker>(std::move(context));
  }
}

void BlockDevice::prepare_activation() {
  std::lock_guard lock(mutex_);
  standby_threads_.resize(config_.num_queues);
  for (auto& thread : standby_threads_)
    if (!thread) thread = std::make_unique<StandbyThread>();
}

void BlockDevice::notify_queue(uint16_t queue_index) {
  std::lock_guard lock(mutex_);
  if (queue_index < workers_.size() && workers_[queue_index]) workers_[queue_index]->kick();
}

void BlockDevice::reset() {
  std::lock_guard lock(mutex_);
  workers_.clear();  // each worker finishes its requests in flight and stops
  memory_ = nullptr;
  queues_.clear();
  queue_interrupt_ = nullptr;
  quiesced_ = false;
  held_heads_.clear();  // the driver forgot its requests with the reset
  limiters_.clear();
}

void BlockDevice::quiesce() {
  std::lock_guard lock(mutex_);
  if (quiesced_) return;
  quiesced_ = true;
  held_heads_.resize(workers_.size());
  limiters_.resize(workers_.size());
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (!workers_[i]) continue;
    workers_[i]->stop();
    held_heads_[i] = workers_[i]->held_head();
    limiters_[i] = workers_[i]->take_limiter();
  }
  workers_.clear();
}

void BlockDevice::resume() {
  std::lock_guard lock(mutex_);
  if (!quiesced_) return;
  quiesced_ = false;
  if (memory_ != nullptr) start_workers_locked();
}

nlohmann::json BlockDevice::save_state() const {
  std::lock_guard lock(mutex_);
  nlohmann::json held = nlohmann::json::array();
  for (size_t i = 0; i < held_heads_.size(); ++i)
    if (held_heads_[i]) held.push_back({{"queue", i}, {"head", *held_heads_[i]}});
  return {{"held", std::move(held)}};
}

void BlockDevice::load_state(const nlohmann::json& state) {
  const std::string what = "virtio-blk '" + config_.path + "'";
  std::vector<std::optional<uint16_t>> held(config_.num_queues);
  for (const nlohmann::json& entry : snapshot::state_array(state, "held", what)) {
    const auto queue = static_cast<size_t>(snapshot::state_u64(entry, "queue", what, config_.num_queues - 1u));
    const auto head = static_cast<uint16_t>(snapshot::state_u64(entry, "head", what, kQueueSize - 1u));
    if (held[queue])
      throw snapshot::StateError("saved state of " + what + ": 'held' names queue " + std::to_string(queue) + " twice");
    held[queue] = head;
  }
  std::lock_guard lock(mutex_);
  if (memory_ != nullptr) throw Error(what + ": a saved state is loaded before activation, not while active");
  held_heads_ = std::move(held);
}

void BlockDevice::set_queue_notifiers(std::vector<int> eventfds) {
  std::lock_guard lock(mutex_);
  notifiers_ = std::move(eventfds);
}

void BlockDevice::set_failure_handler(DeviceFailure failure) {
  std::lock_guard lock(mutex_);
  failure_ = std::move(failure);
}

BlockDevice::QueueResult BlockDevice::process_queue(const GuestMemory& memory, Virtqueue& queue) const {
  QueueResult result;
  bool pushed = false;
  uint32_t rejected = 0;
  try {
    while (auto chain = queue.next_request(&rejected)) {
      const BlockRequest request = parse_block_request(memory, *chain);
      uint32_t used = 0;
      if (request.malformed) {
        if (request.status_gpa) memory.write_object<uint8_t>(*request.status_gpa, kBlockStatusIoErr);
      } else {
        const BlockPlan work = plan(memory, *chain, request);
        const uint8_t status = run_sync(work);
        memory.write_object<uint8_t>(*request.status_gpa, status);
        used = (status == kBlockStatusOk ? work.bytes_written : 0) + 1;
      }
      queue.push_used(chain->head, used);
      pushed = true;
    }
    // Whether the driver wants to hear of them is the transport's question
    // (Virtqueue::needs_notification), asked once per interrupt it may raise.
    result.interrupt = pushed || rejected > 0;
  } catch (const VirtqueueError& error) {
    result.interrupt = pushed || rejected > 0;
    result.queue_error = error.what();
  }
  return result;
}

bool BlockDevice::in_range(uint64_t sector, uint64_t sectors) const {
  return sector <= capacity_ && sectors <= capacity_ - sector;
}

namespace {
BlockPlan answer(uint8_t status, uint32_t bytes_written = 0) {
  BlockPlan done;
  done.status = status;
  done.bytes_written = bytes_written;
  return done;
}
}  // namespace

BlockPlan BlockDevice::plan(const GuestMemory& memory, const DescriptorChain& chain,
                            const BlockRequest& request) const {
  const BlockRequestHeader& header = request.header;
  BlockPlan work;
  switch (header.type) {
    case kBlockRequestIn:
    case kBlockRequestOut: {
      const bool in = header.type == kBlockRequestIn;
      const uint64_t length = in ? request.writable_data_bytes : request.readable_data_bytes;
      if (!in && disk_.read_only()) return answer(kBlockStatusIoErr);
      if (length % kBlockSectorSize != 0 || length >= UINT32_MAX) return answer(kBlockStatusIoErr);
      if (!in_range(header.sector, length / kBlockSectorSize)) return answer(kBlockStatusIoErr);
      if (!chain_iovecs(memory, chain, in, in ? 0 : sizeof(BlockRequestHeader), length, work.buffers))
        return answer(kBlockStatusIoErr);
      work.kind = in ? BlockPlan::Kind::kRead : BlockPlan::Kind::kWrite;
      work.offset = header.sector * kBlockSectorSize;
      work.length = length;
      work.bytes_written = in ? static_cast<uint32_t>(length) : 0;
      return work;
    }
    case kBlockRequestFlush:
      work.kind = BlockPlan::Kind::kFlush;
      return work;
    case kBlockRequestGetId: {
      // The id is 20 bytes, zero-padded (not NUL-terminated when exactly 20 long).
      std::array<uint8_t, kBlockIdBytes> id{};
      std::memcpy(id.data(), config_.id.data(), std::min<size_t>(config_.id.size(), id.size()));
      const uint64_t length = std::min<uint64_t>(request.writable_data_bytes, id.size());
      std::vector<iovec> iov;
      if (!chain_iovecs(memory, chain, true, 0, length, iov)) return answer(kBlockStatusIoErr);
      const uint8_t* source = id.data();
      for (const iovec& piece : iov) {
        std::memcpy(piece.iov_base, source, piece.iov_len);
        source += piece.iov_len;
      }
      return answer(kBlockStatusOk, static_cast<uint32_t>(length));
    }
    case kBlockRequestDiscard:
    case kBlockRequestWriteZeroes:
      return plan_segments(memory, chain, request);
    default:
      return answer(kBlockStatusUnsupp);
  }
}

BlockPlan BlockDevice::plan_segments(const GuestMemory& memory, const DescriptorChain& chain,
                                     const BlockRequest& request) const {
  const bool discard = request.header.type == kBlockRequestDiscard;
  if (disk_.read_only()) return answer(kBlockStatusIoErr);
  const uint64_t bytes = request.readable_data_bytes;
  if (bytes % sizeof(BlockDiscardSegment) != 0) return answer(kBlockStatusIoErr);
  const uint64_t count = bytes / sizeof(BlockDiscardSegment);
  if (count > (discard ? kMaxDiscardSegments : kMaxWriteZeroesSegments)) return answer(kBlockStatusIoErr);
  const uint32_t max_sectors = discard ? kMaxDiscardSectors : kMaxWriteZeroesSectors;

  // Check every segment before touching the disk, so a bad request changes nothing.
  BlockPlan work;
  work.kind = BlockPlan::Kind::kSegments;
  work.discard = discard;
  work.segments.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    BlockDiscardSegment& segment = work.segments[i];
    if (!read_chain_bytes(memory, chain, sizeof(BlockRequestHeader) + i * sizeof(BlockDiscardSegment), &segment,
                          sizeof(BlockDiscardSegment)))
      return answer(kBlockStatusIoErr);
    // Unknown flags, and unmap on a discard, are UNSUPP (5.2.6.2).
    if ((segment.flags & ~kBlockSegmentFlagUnmap) != 0) return answer(kBlockStatusUnsupp);
    if (discard && (segment.flags & kBlockSegmentFlagUnmap) != 0) return answer(kBlockStatusUnsupp);
    if (segment.num_sectors > max_sectors || !in_range(segment.sector, segment.num_sectors))
      return answer(kBlockStatusIoErr);
  }
  return work;
}

uint8_t BlockDevice::run_sync(const BlockPlan& work) const {
  int err = 0;
  switch (work.kind) {
    case BlockPlan::Kind::kDone:
      return work.status;
    case BlockPlan::Kind::kRead:
      err = disk_.read(work.offset, work.buffers);
      break;
    case BlockPlan::Kind::kWrite:
      err = disk_.write(work.offset, work.buffers);
      break;
    case BlockPlan::Kind::kFlush:
      err = disk_.flush();
      break;
    case BlockPlan::Kind::kSegments:
      for (const BlockDiscardSegment& segment : work.segments) {
        const uint64_t offset = segment.sector * kBlockSectorSize;
        const uint64_t length = uint64_t{segment.num_sectors} * kBlockSectorSize;
        err = work.discard ? disk_.discard(offset, length)
                           : disk_.write_zeroes(offset, length, (segment.flags & kBlockSegmentFlagUnmap) != 0);
        if (err != 0) break;
      }
      break;
  }
  return err == 0 ? kBlockStatusOk : kBlockStatusIoErr;
}

}  // namespace kdom::devices::virtio
