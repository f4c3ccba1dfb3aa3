// libFuzzer target: virtio-net's receive and transmit processing (NetDevice) against
// arbitrary ring contents. Byte 0 bit 6 picks the receive queue (else transmit); the input's
// last byte picks mergeable buffers (bit 0), GUEST_CSUM (bit 1) and the sizes of the three
// frames the fake back end offers for receive (bits 2-7). A broken queue surfaces as
// VirtqueueError from notify_queue; any crash, sanitizer report or other exception is a bug.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "devices/virtio/net.h"
#include "fuzz_ring.h"

using kdom::devices::virtio::NetDevice;
using kdom::devices::virtio::Virtqueue;
using kdom::devices::virtio::VirtqueueError;
namespace virtio = kdom::devices::virtio;

namespace {

// Hands out queued frames, then -EAGAIN; reads every byte it is asked to send.
class FakeBackend : public kdom::devices::net::NetBackend {
 public:
  std::deque<std::vector<uint8_t>> frames;
  uint64_t sent_checksum = 0;

  std::string describe() const override { return "fuzz back end"; }
  int fd() const override { return -1; }
  void set_offload(unsigned) override {}
  ssize_t read_frame(std::span<uint8_t> buffer) override {
    if (frames.empty()) return -EAGAIN;
    const std::vector<uint8_t> frame = std::move(frames.front());
    frames.pop_front();
    const size_t n = frame.size() < buffer.size() ? frame.size() : buffer.size();
    std::memcpy(buffer.data(), frame.data(), n);
    return static_cast<ssize_t>(n);
  }
  ssize_t write_frame(std::span<const iovec> parts) override {
    ssize_t total = 0;
    for (const iovec& part : parts) {
      const auto* bytes = static_cast<const uint8_t*>(part.iov_base);
      for (size_t i = 0; i < part.iov_len; ++i) sent_checksum = sent_checksum * 31 + bytes[i];
      total += static_cast<ssize_t>(part.iov_len);
    }
    return total;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kdom::fuzz::RingSetup setup;
  if (!kdom::fuzz::setup_ring(data, size, setup)) return 0;
  const auto& memory = kdom::fuzz::fuzz_memory();
  const bool receive = (data[0] & 0x40) != 0;
  const uint8_t extra = data[size - 1];

  auto backend = std::make_unique<FakeBackend>();
  FakeBackend* fake = backend.get();
  const size_t scale = extra >> 2;
  for (size_t frame_bytes : {size_t{8} + scale * 97, size_t{60} + scale * 1031, size_t{12}})
    fake->frames.emplace_back(frame_bytes, static_cast<uint8_t>(frame_bytes));
  NetDevice device({virtio::default_mac(0), "fuzz", {}}, std::move(backend), nullptr);

  uint64_t features = virtio::kFeatureVersion1;
  if (setup.config.event_idx) features |= virtio::kFeatureRingEventIdx;
  if (setup.config.indirect_desc) features |= virtio::kFeatureRingIndirectDesc;
  if (extra & 1) features |= virtio::kNetFeatureMrgRxbuf;
  if (extra & 2) features |= virtio::kNetFeatureGuestCsum | virtio::kNetFeatureGuestTso4;

  auto queue = std::make_shared<Virtqueue>(memory, setup.config);
  std::vector<std::shared_ptr<Virtqueue>> queues(2);
  queues[receive ? NetDevice::kRxQueue : NetDevice::kTxQueue] = queue;
  try {
    device.activate(memory, features, queues, [](uint16_t) {}, [] {});
    if (receive) {
      device.on_backend_readable();
      device.notify_queue(NetDevice::kRxQueue);
    } else {
      device.notify_queue(NetDevice::kTxQueue);
    }
    (void)queue->needs_notification();
  } catch (const VirtqueueError&) {
  }
  device.reset();
  return 0;
}
