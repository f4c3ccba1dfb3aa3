// virtio-console request handling.
#include "devices/virtio/console.h"

#include <algorithm>
#include <string>

#include "base/error.h"
#include "snapshot/state_json.h"

namespace kdom::devices::virtio {

uint64_t ConsoleDevice::offered_features() const {
  return kFeatureVersion1 | kFeatureRingIndirectDesc | kFeatureRingEventIdx;
}

void ConsoleDevice::read_config(uint64_t, std::span<uint8_t> data) const { std::fill(data.begin(), data.end(), 0); }

void ConsoleDevice::activate(const GuestMemory& memory, uint64_t, std::vector<std::shared_ptr<Virtqueue>> queues,
                             QueueInterrupt queue_interrupt, ConfigInterrupt) {
  if (queues.size() != 2) throw Error("virtio-console: activated with " + std::to_string(queues.size()) + " queues");
  std::lock_guard lock(mutex_);
  memory_ = &memory;
  queues_ = std::move(queues);
  queue_interrupt_ = std::move(queue_interrupt);
  quiesced_ = false;
  // Restored input the guest was ready for: deliver what its buffers hold room for now.
  if (guest_spoke_ && !pending_input_.empty()) serve(kReceiveQueue);
}

void ConsoleDevice::reset() {
  std::lock_guard lock(mutex_);
  quiesced_ = false;
  memory_ = nullptr;
  queues_.clear();
  queue_interrupt_ = nullptr;
  guest_spoke_ = false;
}

void ConsoleDevice::notify_queue(uint16_t queue_index) {
  std::lock_guard lock(mutex_);
  serve(queue_index);
}

size_t ConsoleDevice::send_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  size_t accepted = std::min(bytes.size(), kMaxPendingInput - pending_input_.size());
  pending_input_.insert(pending_input_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(accepted));
  serve(kReceiveQueue);
  return accepted;
}

void ConsoleDevice::quiesce() {
  std::lock_guard lock(mutex_);
  quiesced_ = true;
}

void ConsoleDevice::resume() {
  DeviceFailure failure;
  std::string why;
  {
    std::lock_guard lock(mutex_);
    if (!quiesced_) return;
    quiesced_ = false;
    try {
      serve(kTransmitQueue);
      serve(kReceiveQueue);
    } catch (const VirtqueueError& error) {
      failure = failure_;
      why = error.what();
    }
  }
  if (failure) failure(why);  // outside the lock: the transport may call back
}

void ConsoleDevice::set_failure_handler(DeviceFailure failure) {
  std::lock_guard lock(mutex_);
  failure_ = std::move(failure);
}

nlohmann::json ConsoleDevice::save_state() const {
  std::lock_guard lock(mutex_);
  const std::vector<uint8_t> pending(pending_input_.begin(), pending_input_.end());
  return {{"pending_input", snapshot::bytes_to_hex(pending)}, {"guest_spoke", guest_spoke_}};
}

void ConsoleDevice::load_state(const nlohmann::json& state) {
  const std::string what = "virtio-console";
  std::vector<uint8_t> pending = snapshot::state_bytes_up_to(state, "pending_input", what, kMaxPendingInput);
  const bool guest_spoke = snapshot::state_bool(state, "guest_spoke", what);
  std::lock_guard lock(mutex_);
  pending_input_.assign(pending.begin(), pending.end());
  guest_spoke_ = guest_spoke;
}

// Called with mutex_ held.
void ConsoleDevice::serve(uint16_t queue_index) {
  if (quiesced_ || memory_ == nullptr || queue_index >= queues_.size() || !queues_[queue_index] || queues_[queue_index]->broken())
    return;
  bool used = false;
  try {
    if (queue_index == kTransmitQueue) {
      used = transmit(*memory_, *queues_[queue_index], output_);
      if (used && !guest_spoke_) {
        guest_spoke_ = true;
        if (queue_interrupt_) queue_interrupt_(queue_index);
        return serve(kReceiveQueue);  // input held until now
      }
    } else if (guest_spoke_) {
      used = receive(*memory_, *queues_[queue_index], pending_input_);
    }
  } catch (const VirtqueueError& error) {
    if (queue_interrupt_) queue_interrupt_(queue_index);
    throw VirtqueueError("virtio-console queue " + std::to_string(queue_index) + ": " + error.what());
  }
  if (used && queue_interrupt_) queue_interrupt_(queue_index);
}

bool ConsoleDevice::receive(const GuestMemory& memory, Virtqueue& queue, std::deque<uint8_t>& pending) {
  bool used = false;
  uint32_t rejected = 0;
  while (!pending.empty()) {
    auto chain = queue.next_request(&rejected);
    if (!chain) break;
    uint32_t written = 0;
    for (const auto& buffer : chain->buffers) {
      if (!buffer.device_writable || pending.empty()) continue;
      uint32_t length = static_cast<uint32_t>(std::min<size_t>(buffer.len, pending.size()));
      auto target = memory.slice(buffer.addr, length);
      std::copy_n(pending.begin(), length, target.begin());
      pending.erase(pending.begin(), pending.begin() + length);
      written += length;
    }
    queue.push_used(chain->head, written);
    used = true;
  }
  return used || rejected > 0;
}

bool ConsoleDevice::transmit(const GuestMemory& memory, Virtqueue& queue, const Output& output) {
  bool used = false;
  uint32_t rejected = 0;
  while (auto chain = queue.next_request(&rejected)) {
    uint32_t taken = 0;
    for (const auto& buffer : chain->buffers) {
      if (buffer.device_writable || taken >= kMaxBytesPerRequest) continue;
      uint32_t length = std::min(buffer.len, kMaxBytesPerRequest - taken);
      if (output) output(memory.slice(buffer.addr, length));
      taken += length;
    }
    queue.push_used(chain->head, 0);
    used = true;
  }
  return used || rejected > 0;
}

}  // namespace kdom::devices::virtio
