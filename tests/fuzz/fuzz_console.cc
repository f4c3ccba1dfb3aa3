// libFuzzer target: virtio-console's queue handling against arbitrary ring contents. The
// input's ring is both the transmit queue (the guest's output) and, aliased as a hostile
// driver may do, the receive queue for pending host input. VirtqueueError (a queue the driver broke) is an expected outcome; any
// crash, sanitizer report or other exception is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "devices/virtio/console.h"
#include "fuzz_ring.h"

using kdom::devices::virtio::ConsoleDevice;
using kdom::devices::virtio::Virtqueue;
using kdom::devices::virtio::VirtqueueError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kdom::fuzz::RingSetup setup;
  if (!kdom::fuzz::setup_ring(data, size, setup)) return 0;
  const auto& memory = kdom::fuzz::fuzz_memory();

  size_t output_bytes = 0;
  ConsoleDevice device([&](std::span<const uint8_t> bytes) { output_bytes += bytes.size(); });
  auto transmit = std::make_shared<Virtqueue>(memory, setup.config);
  auto receive = std::make_shared<Virtqueue>(memory, setup.config);
  try {
    device.activate(memory, device.offered_features(), {receive, transmit}, [](uint16_t) {}, [] {});
    const uint8_t input[] = "host input for the guest\n";
    device.send_input(input);
    device.notify_queue(ConsoleDevice::kTransmitQueue);  // the guest's first output lets input in
    device.notify_queue(ConsoleDevice::kReceiveQueue);
    (void)transmit->needs_notification();
  } catch (const VirtqueueError&) {
  }
  device.reset();
  return 0;
}
