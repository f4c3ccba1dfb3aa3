// libFuzzer target: virtio-rng's request handling (EntropyDevice::serve) against arbitrary
// ring contents. VirtqueueError (a queue the driver broke) is an expected outcome; any crash,
// sanitizer report or other exception is a bug.
#include <cstddef>
#include <cstdint>

#include "devices/virtio/entropy.h"
#include "fuzz_ring.h"

using kdom::devices::virtio::EntropyDevice;
using kdom::devices::virtio::Virtqueue;
using kdom::devices::virtio::VirtqueueError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kdom::fuzz::RingSetup setup;
  if (!kdom::fuzz::setup_ring(data, size, setup)) return 0;
  const auto& memory = kdom::fuzz::fuzz_memory();

  Virtqueue queue(memory, setup.config);
  try {
    (void)EntropyDevice::serve(memory, queue);
    (void)queue.needs_notification();
  } catch (const VirtqueueError&) {
  }
  return 0;
}
