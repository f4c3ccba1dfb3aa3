// Shared set-up for the virtqueue fuzz targets: the fuzzer's input becomes a split virtqueue
// in a small guest RAM. The first two bytes choose the queue configuration; the rest is copied
// to guest-physical address 0 onward, where the descriptor table, available ring and used ring
// lie back to back (so even short inputs reach all three), followed by room for data buffers
// the descriptors may point at. Everything the input does not cover is zero.
//
//   byte 0: bits 0-3  log2 of the queue size, taken modulo 9 (sizes 1..256)
//           bit  4    VIRTIO_RING_F_EVENT_IDX
//           bit  5    VIRTIO_RING_F_INDIRECT_DESC
//           bit  6    read-only disk (virtio-blk target)
//           bit  7    misplace the rings: byte 1 moves them (tests validation), else unused
//   byte 1: with bit 7, the ring addresses are shifted by this many bytes (often misaligned)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace kdom::fuzz {

inline constexpr uint64_t kGuestRamBytes = 64 * 1024;
inline constexpr size_t kHeaderBytes = 2;

struct RingSetup {
  devices::virtio::VirtqueueConfig config;
  bool read_only = false;
};

// The guest RAM, mapped once per process and rewritten for every input.
inline const GuestMemory& fuzz_memory() {
  static const GuestMemory memory({GuestRange{0, kGuestRamBytes}});
  return memory;
}

constexpr uint64_t align_up(uint64_t value, uint64_t align) { return (value + align - 1) / align * align; }

// Fills guest RAM from `data` and returns the queue configuration it chose; false when the
// input is too short to choose one.
inline bool setup_ring(const uint8_t* data, size_t size, RingSetup& out) {
  if (size < kHeaderBytes) return false;
  const uint8_t mode = data[0];
  const uint32_t queue_size = 1u << ((mode & 0x0f) % 9);
  out.config = {};
  out.config.size = queue_size;
  out.config.event_idx = (mode & 0x10) != 0;
  out.config.indirect_desc = (mode & 0x20) != 0;
  out.read_only = (mode & 0x40) != 0;

  uint64_t base = 0;
  if (mode & 0x80) base = data[1];
  out.config.descriptor_table = base;
  out.config.avail_ring = base + devices::virtio::virtq_descriptor_table_bytes(queue_size);
  out.config.used_ring = (mode & 0x80)
                             ? out.config.avail_ring + devices::virtio::virtq_avail_ring_bytes(queue_size)
                             : align_up(out.config.avail_ring + devices::virtio::virtq_avail_ring_bytes(queue_size),
                                        devices::virtio::kVirtqUsedRingAlign);

  const auto ram = fuzz_memory().slice(0, kGuestRamBytes);
  const size_t payload = size - kHeaderBytes;
  const size_t copied = payload < ram.size() ? payload : ram.size();
  std::memcpy(ram.data(), data + kHeaderBytes, copied);
  std::memset(ram.data() + copied, 0, ram.size() - copied);
  return true;
}

}  // namespace kdom::fuzz
