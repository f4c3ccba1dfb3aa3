// libFuzzer target: the device side of a split virtqueue against arbitrary ring contents.
// Pops chains (a bounded number), returns each through the used ring, and asks about
// notifications and avail_event (and turns notifications off and on) as a device would.
// VirtqueueError is the expected answer to a hostile ring; any crash, sanitizer report or
// other exception is a bug.
#include <cstddef>
#include <cstdint>
#include <optional>

#include "devices/virtio/queue.h"
#include "fuzz_ring.h"

using kdom::devices::virtio::DescriptorChain;
using kdom::devices::virtio::Virtqueue;
using kdom::devices::virtio::VirtqueueError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kdom::fuzz::RingSetup setup;
  if (!kdom::fuzz::setup_ring(data, size, setup)) return 0;
  const auto& memory = kdom::fuzz::fuzz_memory();

  Virtqueue queue(memory, setup.config);
  try {
    queue.validate();
  } catch (const VirtqueueError&) {
    return 0;
  }

  // Enough rounds to wrap a 256-entry ring a few times, few enough to stay fast.
  constexpr int kMaxPops = 1024;
  for (int round = 0; round < kMaxPops; ++round) {
    std::optional<DescriptorChain> chain;
    try {
      // Now and then as a polling device does: notifications off while it looks, back on.
      if (round % 7 == 3) queue.set_notifications(false);
      if (round % 7 == 5 && queue.set_notifications(true) != queue.has_available()) __builtin_trap();
      chain = queue.pop();
      if (!chain) {
        queue.set_avail_event();
        chain = queue.pop();
      }
    } catch (const VirtqueueError& error) {
      if (!error.head()) break;  // the queue as a whole is broken
      try {
        queue.push_used(*error.head(), 0);
      } catch (const VirtqueueError&) {
        break;
      }
      continue;
    }
    if (!chain) break;
    // Touch every buffer the queue handed out: each must lie wholly inside guest RAM.
    for (const auto& buffer : chain->buffers) {
      auto bytes = memory.slice(buffer.addr, buffer.len);
      if (buffer.device_writable && !bytes.empty()) bytes.front() = bytes.back() = 0xa5;
    }
    const uint64_t writable = chain->writable_bytes();
    (void)chain->readable_bytes();
    try {
      queue.push_used(chain->head, static_cast<uint32_t>(writable > UINT32_MAX ? UINT32_MAX : writable));
      (void)queue.needs_notification();
    } catch (const VirtqueueError&) {
      break;
    }
  }

  // Save/restore round trip, then carry on once more from the restored state.
  try {
    Virtqueue copy(memory, setup.config);
    copy.restore(queue.save());
    (void)copy.needs_notification();
    if (auto chain = copy.pop()) copy.push_used(chain->head, 0);
  } catch (const VirtqueueError&) {
  }
  return 0;
}
