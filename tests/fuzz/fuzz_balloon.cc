// libFuzzer target: virtio-balloon queue processing against arbitrary ring contents: inflate
// (frame numbers discarded from guest RAM), deflate, free page reporting, and the statistics
// queue (held buffer, parsed, returned on request), plus the statistics parser on the raw
// input. The queue roles come from byte 1 (bits 0-1) when byte 0 bit 7 is clear, else from the
// input's length. A broken queue is reported as VirtqueueError; any crash, sanitizer report or
// other exception is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "devices/virtio/balloon.h"
#include "fuzz_ring.h"

using kdom::devices::virtio::BalloonCounters;
using kdom::devices::virtio::BalloonDevice;
using kdom::devices::virtio::BalloonDeviceConfig;
using kdom::devices::virtio::Virtqueue;
using kdom::devices::virtio::VirtqueueError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)kdom::devices::virtio::parse_balloon_stats(std::span<const uint8_t>(data, size));
  kdom::fuzz::RingSetup setup;
  if (!kdom::fuzz::setup_ring(data, size, setup)) return 0;
  const auto& memory = kdom::fuzz::fuzz_memory();
  const unsigned role = (data[0] & 0x80) ? static_cast<unsigned>(size % 4) : (data[1] & 3u);

  auto queue = std::make_shared<Virtqueue>(memory, setup.config);
  try {
    if (role < 3) {
      static constexpr BalloonDevice::PageAction kActions[] = {
          BalloonDevice::PageAction::kInflate, BalloonDevice::PageAction::kDeflate, BalloonDevice::PageAction::kReport};
      BalloonCounters counters;
      if (BalloonDevice::serve_pages(memory, *queue, kActions[role], counters)) (void)queue->needs_notification();
    } else {
      BalloonDevice device(BalloonDeviceConfig{});
      device.activate(memory, device.offered_features(), {queue, queue, queue}, [](uint16_t) {}, [] {});
      device.notify_queue(2);
      (void)device.stats();
      (void)device.request_stats();
      device.notify_queue(2);
      device.set_target_pages(1);
      device.reset();
    }
  } catch (const VirtqueueError&) {
  }
  return 0;
}
