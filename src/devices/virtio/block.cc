// virtio-blk device: opening the image, config space and features, and serving requests
// (IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES) from a queue. All file I/O lives in
// BlockDiskFile so the synchronous calls here can be replaced by io_uring.
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

BlockDiskFile BlockDiskFile::open(const std::string& path, bool read_only) {
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
  // lseek rather than st_size, which is 0 for block devices.
  const off_t end = check_syscall(::lseek(fd, 0, SEEK_END), what + ": cannot find its size");
  return BlockDiskFile(std::move(owned), static_cast<uint64_t>(end), read_only);
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
    : config_(config), disk_(BlockDiskFile::open(config.path, config.read_only)) {
  if (config.id.size() > kBlockIdBytes)
    throw Error("disk image '" + config.path + "': id '" + config.id + "' is longer than 20 bytes");
  if (config.num_queues == 0) throw Error("disk image '" + config.path + "': needs at least one queue");
  // The capacity is in whole 512-byte sectors: a trailing partial sector of the image is
  // rounded down, so the guest never sees (or writes) it.
  capacity_ = disk_.size_bytes() / kBlockSectorSize;
}

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
  std::fill(data.begin(), data.end(), 0);
  const BlockConfigSpace space = config_space();
  const auto* bytes = reinterpret_cast<const uint8_t*>(&space);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i < sizeof(space) && offset + i >= offset) data[i] = bytes[offset + i];
  }
}

void BlockDevice::write_config(uint64_t, std::span<const uint8_t>) {
  // Nothing is writable: writeback is only writable with VIRTIO_BLK_F_CONFIG_WCE, not offered.
}

void BlockDevice::activate(const GuestMemory& memory, uint64_t, std::vector<std::shared_ptr<Virtqueue>> queues,
                           QueueInterrupt queue_interrupt, ConfigInterrupt config_interrupt) {
  if (queues.size() != config_.num_queues)
    throw Error("virtio-blk '" + config_.path + "': activated with " + std::to_string(queues.size()) +
                " queues, expected " + std::to_string(config_.num_queues));
  std::lock_guard lock(mutex_);
  memory_ = &memory;
  queues_ = std::move(queues);
  queue_broken_.assign(queues_.size(), false);
  queue_interrupt_ = std::move(queue_interrupt);
  config_interrupt_ = std::move(config_interrupt);
}

void BlockDevice::notify_queue(uint16_t queue_index) {
  std::lock_guard lock(mutex_);
  if (memory_ == nullptr || queue_index >= queues_.size() || !queues_[queue_index] || queue_broken_[queue_index])
    return;
  const QueueResult result = process_queue(*memory_, *queues_[queue_index]);
  if (result.interrupt && queue_interrupt_) queue_interrupt_(queue_index);
  if (result.queue_error) {
    queue_broken_[queue_index] = true;
    throw VirtqueueError("virtio-blk '" + config_.path + "' queue " + std::to_string(queue_index) + ": " +
                         *result.queue_error);
  }
}

void BlockDevice::reset() {
  std::lock_guard lock(mutex_);
  memory_ = nullptr;
  queues_.clear();
  queue_broken_.clear();
  queue_interrupt_ = nullptr;
  config_interrupt_ = nullptr;
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
        const Completion done = execute(memory, *chain, request);
        memory.write_object<uint8_t>(*request.status_gpa, done.status);
        used = done.bytes_written + 1;
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

BlockDevice::Completion BlockDevice::execute(const GuestMemory& memory, const DescriptorChain& chain,
                                             const BlockRequest& request) const {
  const BlockRequestHeader& header = request.header;
  const Completion ioerr{kBlockStatusIoErr, 0};
  std::vector<iovec> iov;
  switch (header.type) {
    case kBlockRequestIn: {
      const uint64_t length = request.writable_data_bytes;
      if (length % kBlockSectorSize != 0 || length >= UINT32_MAX) return ioerr;
      if (!in_range(header.sector, length / kBlockSectorSize)) return ioerr;
      if (!chain_iovecs(memory, chain, true, 0, length, iov)) return ioerr;
      if (disk_.read(header.sector * kBlockSectorSize, iov) != 0) return ioerr;
      return {kBlockStatusOk, static_cast<uint32_t>(length)};
    }
    case kBlockRequestOut: {
      const uint64_t length = request.readable_data_bytes;
      if (disk_.read_only() || length % kBlockSectorSize != 0) return ioerr;
      if (!in_range(header.sector, length / kBlockSectorSize)) return ioerr;
      if (!chain_iovecs(memory, chain, false, sizeof(BlockRequestHeader), length, iov)) return ioerr;
      if (disk_.write(header.sector * kBlockSectorSize, iov) != 0) return ioerr;
      return {kBlockStatusOk, 0};
    }
    case kBlockRequestFlush:
      return disk_.flush() == 0 ? Completion{kBlockStatusOk, 0} : ioerr;
    case kBlockRequestGetId: {
      // The id is 20 bytes, zero-padded (not NUL-terminated when exactly 20 long).
      std::array<uint8_t, kBlockIdBytes> id{};
      std::memcpy(id.data(), config_.id.data(), std::min<size_t>(config_.id.size(), id.size()));
      const uint64_t length = std::min<uint64_t>(request.writable_data_bytes, id.size());
      if (!chain_iovecs(memory, chain, true, 0, length, iov)) return ioerr;
      const uint8_t* source = id.data();
      for (const iovec& piece : iov) {
        std::memcpy(piece.iov_base, source, piece.iov_len);
        source += piece.iov_len;
      }
      return {kBlockStatusOk, static_cast<uint32_t>(length)};
    }
    case kBlockRequestDiscard:
    case kBlockRequestWriteZeroes:
      return execute_segments(memory, chain, request);
    default:
      return {kBlockStatusUnsupp, 0};
  }
}

BlockDevice::Completion BlockDevice::execute_segments(const GuestMemory& memory, const DescriptorChain& chain,
                                                      const BlockRequest& request) const {
  const bool discard = request.header.type == kBlockRequestDiscard;
  const Completion ioerr{kBlockStatusIoErr, 0};
  if (disk_.read_only()) return ioerr;
  const uint64_t bytes = request.readable_data_bytes;
  if (bytes % sizeof(BlockDiscardSegment) != 0) return ioerr;
  const uint64_t count = bytes / sizeof(BlockDiscardSegment);
  if (count > (discard ? kMaxDiscardSegments : kMaxWriteZeroesSegments)) return ioerr;
  const uint32_t max_sectors = discard ? kMaxDiscardSectors : kMaxWriteZeroesSectors;

  // Check every segment before touching the disk, so a bad request changes nothing.
  std::vector<BlockDiscardSegment> segments(count);
  for (uint64_t i = 0; i < count; ++i) {
    if (!read_chain_bytes(memory, chain, sizeof(BlockRequestHeader) + i * sizeof(BlockDiscardSegment),
                          &segments[i], sizeof(BlockDiscardSegment)))
      return ioerr;
    const BlockDiscardSegment& segment = segments[i];
    // Unknown flags, and unmap on a discard, are UNSUPP (5.2.6.2).
    if ((segment.flags & ~kBlockSegmentFlagUnmap) != 0) return {kBlockStatusUnsupp, 0};
    if (discard && (segment.flags & kBlockSegmentFlagUnmap) != 0) return {kBlockStatusUnsupp, 0};
    if (segment.num_sectors > max_sectors || !in_range(segment.sector, segment.num_sectors)) return ioerr;
  }
  for (const BlockDiscardSegment& segment : segments) {
    const uint64_t offset = segment.sector * kBlockSectorSize;
    const uint64_t length = uint64_t{segment.num_sectors} * kBlockSectorSize;
    const int err = discard ? disk_.discard(offset, length)
                            : disk_.write_zeroes(offset, length, (segment.flags & kBlockSegmentFlagUnmap) != 0);
    if (err != 0) return ioerr;
  }
  return {kBlockStatusOk, 0};
}

}  // namespace kdom::devices::virtio
