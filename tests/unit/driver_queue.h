// A split virtqueue in guest memory driven from the test, as a guest driver would: chains
// linked and made available, the used ring read back. Shared by the device tests.
#pragma once

#include <cstdint>
#include <vector>

#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace kdom::devices::virtio::test_driver {

struct Buf {
  uint64_t addr;
  uint32_t len;
  bool writable;
};

struct DriverQueue {
  const GuestMemory* memory;
  uint64_t desc, avail, used;
  uint16_t size;
  uint16_t next_desc = 0;
  uint16_t avail_idx = 0;

  VirtqueueConfig config() const { return {size, desc, avail, used, false, false}; }
  // Links `bufs` into a chain, makes it available, returns its head.
  uint16_t add(const std::vector<Buf>& bufs) {
    const uint16_t head = next_desc;
    for (size_t i = 0; i < bufs.size(); ++i) {
      const auto index = static_cast<uint16_t>((next_desc + i) % size);
      uint16_t flags = bufs[i].writable ? kVirtqDescFlagWrite : 0;
      if (i + 1 < bufs.size()) flags |= kVirtqDescFlagNext;
      memory->write_object(desc + 16u * index,
                           VirtqDescriptor{bufs[i].addr, bufs[i].len, flags, static_cast<uint16_t>((index + 1) % size)});
    }
    next_desc = static_cast<uint16_t>((next_desc + bufs.size()) % size);
    memory->write_object<uint16_t>(avail + 4 + 2u * (avail_idx % size), head);
    memory->write_object<uint16_t>(avail + 2, ++avail_idx);
    return head;
  }
  uint16_t used_idx() const { return memory->read_object<uint16_t>(used + 2); }
  VirtqUsedElement used_at(uint16_t slot) const {
    return memory->read_object<VirtqUsedElement>(used + 4 + 8u * (slot % size));
  }
  // The heads in the used ring, in order.
  std::vector<uint32_t> used_heads() const {
    std::vector<uint32_t> heads;
    for (uint16_t i = 0; i < used_idx(); ++i) heads.push_back(used_at(i).id);
    return heads;
  }
};

}  // namespace kdom::devices::virtio::test_driver
