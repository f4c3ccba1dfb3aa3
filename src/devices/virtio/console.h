// virtio-console (virtio 1.x section 5.3) with one port and no multiport: the guest's hvc0.
// What the guest writes to its transmit queue goes to a host sink; host input is queued here
// (bounded) and copied into the buffers the guest offers on its receive queue. The device
// knows nothing of where the bytes come from or go (terminal, pty, file): the VMM wires that.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "devices/virtio/virtio_device.h"

namespace kdom::devices::virtio {

class ConsoleDevice : public VirtioDevice {
 public:
  // Receives the guest's output, in the caller's thread (the device event loop).
  using Output = std::function<void(std::span<const uint8_t>)>;

  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kReceiveQueue = 0;
  static constexpr uint16_t kTransmitQueue = 1;
  // Host input waiting for the guest beyond this is dropped, as a UART overruns.
  static constexpr size_t kMaxPendingInput = 64 * 1024;
  // The most bytes taken from one transmit request; a longer one is cut short.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

  explicit ConsoleDevice(Output output) : output_(std::move(output)) {}

  DeviceType type() const override { return DeviceType::kConsole; }
  uint64_t offered_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }
  // cols, rows, max_nr_ports, emerg_wr: all zero (no SIZE, MULTIPORT or EMERG_WRITE).
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  void activate(const GuestMemory& memory, uint64_t negotiated_features,
                std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                ConfigInterrupt config_interrupt) override;
  // Transmit: hands every available buffer to the output. Receive: the guest offered buffers,
  // fill them from pending input. A queue the driver broke is stopped and the error rethrown.
  void notify_queue(uint16_t queue_index) override;
  void reset() override;

  // While quiesced, host input is queued and notifications remembered, nothing touches the
  // queues; resume() serves both queues (transmit first), which looks at the rings afresh.
  void quiesce() override;
  void resume() override;
  // Where resume() reports a queue it found broken.
  void set_failure_handler(DeviceFailure failure) override;
  // {"pending_input": hex bytes not yet delivered (at most kMaxPendingInput),
  //  "guest_spoke": whether input may be delivered yet}
  nlohmann::json save_state() const override;
  void load_state(const nlohmann::json& state) override;

  // Host input for the guest: queued and delivered as receive buffers allow, once the guest
  // has written to the port. Returns how many
  // bytes were accepted (the rest did not fit under kMaxPendingInput and is dropped).
  size_t send_input(std::span<const uint8_t> bytes);

  // Copies pending input into the queue's available chains; returns whether any were used.
  static bool receive(const GuestMemory& memory, Virtqueue& queue, std::deque<uint8_t>& pending);
  // Passes the readable bytes of every available chain to `output`; whether any were used.
  static bool transmit(const GuestMemory& memory, Virtqueue& queue, const Output& output);

 private:
  void serve(uint16_t queue_index);

  Output output_;
  mutable std::mutex mutex_;
  DeviceFailure failure_;
  bool quiesced_ = false;
  const GuestMemory* memory_ = nullptr;
  std::vector<std::shared_ptr<Virtqueue>> queues_;
  QueueInterrupt queue_interrupt_;
  std::deque<uint8_t> pending_input_;
  // Whether the guest has written to the port since activation. Linux's driver discards
  // input that arrives before its console port is set up (it fills the receive queue first),
  // and a guest writes only once it is: so host input waits for the guest's first write.
  bool guest_spoke_ = false;
};

}  // namespace kdom::devices::virtio
