// VirtioDevice: what a virtio device (blk, net, console, rng, ...) offers its transport
// (virtio-pci today), independent of how the guest reaches it. The transport owns feature
// negotiation, queue configuration and interrupts; the device owns its config space and the
// processing of its queues. As kvmtool separates `virtio_ops` from the transport.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace kdom::devices::virtio {

// Feature bits every device may offer (virtio 1.x, section 6).
inline constexpr uint64_t kFeatureRingIndirectDesc = 1ULL << 28;
inline constexpr uint64_t kFeatureRingEventIdx = 1ULL << 29;
inline constexpr uint64_t kFeatureVersion1 = 1ULL << 32;

// Virtio device type ids (section 5).
enum class DeviceType : uint16_t { kNet = 1, kBlock = 2, kConsole = 3, kEntropy = 4, kBalloon = 5, kVsock = 19 };

// Raised by a device when it has put buffers in a queue's used ring and the driver should be
// told (the transport checks Virtqueue::needs_notification and fires the queue's vector).
using QueueInterrupt = std::function<void(uint16_t queue_index)>;
// Raised when the device's configuration space changed.
using ConfigInterrupt = std::function<void()>;
// Raised by a device that cannot go on (say, a queue the driver broke) from any of its
// threads: the transport sets DEVICE_NEEDS_RESET and tells the driver.
using DeviceFailure = std::function<void(const std::string& reason)>;

// Copies bytes [offset, offset + data.size()) of a device's configuration space, laid out in
// `image`, into `data`; bytes beyond the image read as zero (for read_config).
inline void read_config_image(std::span<const uint8_t> image, uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = offset < image.size() && i < image.size() - offset ? image[offset + i] : 0;
}

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual DeviceType type() const = 0;
  // Device-specific feature bits offered, together with the generic ones above it supports.
  virtual uint64_t offered_features() const = 0;
  // The maximum size of each queue; the vector's length is the number of queues.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;

  // Device-specific configuration space (offset relative to its start); out-of-range reads
  // give zeros and out-of-range writes are ignored.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;

  // The driver set DRIVER_OK: from now on the device may use its queues. `queues` are
  // configured and validated by the transport, one per queue_max_sizes() entry (a queue the
  // driver did not enable is absent: nullptr). Throws Error if the device cannot start.
  virtual void activate(const GuestMemory& memory, uint64_t negotiated_features,
                        std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                        ConfigInterrupt config_interrupt) = 0;

  // The driver wrote to queue `queue_index`'s notification address (ioeventfd or MMIO exit).
  virtual void notify_queue(uint16_t queue_index) = 0;

  // The driver reset the device (status 0): stop using the queues and forget them. When this
  // returns, no thread of the device touches the queues or raises interrupts any more.
  virtual void reset() = 0;
  // The device has left its domain for good (a forced hot-unplug; reset first): it lets go of
  // what it holds on the host that others may want at once. A NIC closes its TAP.
  virtual void release_host_side() {}

  // Whether the device waits on its queues' notification eventfds (KVM ioeventfds) in its own
  // threads; if so, it is given them once, before any activate, and nobody else reads them.
  // Otherwise the VMM reads them and calls notify_queue.
  virtual bool waits_on_notifiers() const { return false; }
  virtual void set_queue_notifiers(std::vector<int> /*eventfds, one per queue*/) {}

  // The transport's failure handler, given once before any activate. A device that only
  // fails inside notify_queue may instead throw from it.
  virtual void set_failure_handler(DeviceFailure) {}

  // Save and restore (snapshot/, docs/snapshot-format.md). The pause point: after quiesce()
  // returns, no thread of the device touches guest memory, its queues or its interrupts until
  // resume(); a request already taken from a ring and not finished is kept (finished, or held
  // in the device's saved state to be served again after a restore), never lost. Both are
  // called in the VMM's device event loop thread, quiesce only while the device is active.
  virtual void quiesce() {}
  virtual void resume() {}
  // The device's own state beyond what the transport keeps (features, status, queue
  // configurations and indices), as a JSON object; called while quiesced, or not active.
  virtual nlohmann::json save_state() const { return nlohmann::json::object(); }
  // Before activate() on a restore: the state save_state gave (maybe written by another
  // host: checked like any untrusted input; throws snapshot::StateError, or Error, naming the
  // bad field, with the device unchanged). activate() then carries on from it.
  virtual void load_state(const nlohmann::json& /*state*/) {}
  // A restore is coming (its state still on its way): set up ahead what activate() would
  // take time to make, such as threads, so that a live migration's pause does not wait for it.
  virtual void prepare_activation() {}

  // The device's own state beyond its queues, one line, for a debugging dump (empty: none).
  // Must not wait for a lock: the dump is for a device that may be stuck.
  virtual std::string describe_state() const { return {}; }
};

}  // namespace kdom::devices::virtio
