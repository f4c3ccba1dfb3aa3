// virtio-rng (virtio 1.x section 5.4): an entropy source for the guest. Every device-writable
// buffer the driver offers is filled from the host's getrandom(); the device has no
// configuration space and one queue.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/virtio/virtio_device.h"

namespace kdom::devices::virtio {

class EntropyDevice : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // The most bytes given for one request; a driver asking for more gets this much.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

  DeviceType type() const override { return DeviceType::kEntropy; }
  uint64_t offered_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  void activate(const GuestMemory& memory, uint64_t negotiated_features,
                std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                ConfigInterrupt config_interrupt) override;
  // Serves every available request in the caller's thread (the VMM's device event loop).
  // A queue the driver broke is stopped and the VirtqueueError rethrown.
  void notify_queue(uint16_t queue_index) override;
  void reset() override;
  void set_failure_handler(DeviceFailure failure) override;
  // While quiesced a notification serves nothing; resume() serves what the ring holds (a
  // queue found broken then is reported through the failure handler). Nothing else is kept:
  // a request is served whole in the notifying call, so there is no state to save.
  void quiesce() override;
  void resume() override;

  // Fills the queue's available requests; returns whether any were used.
  static bool serve(const GuestMemory& memory, Virtqueue& queue);

 private:
  // Serves the queue and raises its interrupt if needed (mutex_ held); throws VirtqueueError.
  void serve_locked();

  std::mutex mutex_;
  DeviceFailure failure_;
  bool quiesced_ = false;
  const GuestMemory* memory_ = nullptr;
  std::shared_ptr<Virtqueue> queue_;
  QueueInterrupt queue_interrupt_;
};

}  // namespace kdom::devices::virtio
