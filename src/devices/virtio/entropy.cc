// virtio-rng request handling.
#include "devices/virtio/entropy.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>

#include "base/error.h"

namespace kdom::devices::virtio {

namespace {
// Fills `data` from the host's entropy pool; false if it could not.
bool fill_random(std::span<uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = getrandom(data.data() + done, data.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}
}  // namespace

uint64_t EntropyDevice::offered_features() const {
  return kFeatureVersion1 | kFeatureRingIndirectDesc | kFeatureRingEventIdx;
}

void EntropyDevice::read_config(uint64_t, std::span<uint8_t> data) const { std::fill(data.begin(), data.end(), 0); }

void EntropyDevice::activate(const GuestMemory& memory, uint64_t, std::vector<std::shared_ptr<Virtqueue>> queues,
                             QueueInterrupt queue_interrupt, ConfigInterrupt) {
  if (queues.size() != 1) throw Error("virtio-rng: activated with " + std::to_string(queues.size()) + " queues");
  std::lock_guard lock(mutex_);
  memory_ = &memory;
  queue_ = queues[0];
  queue_interrupt_ = std::move(queue_interrupt);
}

void EntropyDevice::reset() {
  std::lock_guard lock(mutex_);
  quiesced_ = false;
  memory_ = nullptr;
  queue_.reset();
  queue_interrupt_ = nullptr;
}

void EntropyDevice::set_failure_handler(DeviceFailure failure) {
  std::lock_guard lock(mutex_);
  failure_ = std::move(failure);
}

void EntropyDevice::quiesce() {
  std::lock_guard lock(mutex_);
  quiesced_ = true;
}

void EntropyDevice::resume() {
  DeviceFailure failure;
  std::string why;
  {
    std::lock_guard lock(mutex_);
    if (!quiesced_) return;
    quiesced_ = false;
    if (memory_ == nullptr || !queue_ || queue_->broken()) return;
    try {
      serve_locked();
    } catch (const VirtqueueError& error) {
      failure = failure_;
      why = std::string("virtio-rng: ") + error.what();
    }
  }
  if (failure) failure(why);  // outside the lock: the transport may call back
}

void EntropyDevice::notify_queue(uint16_t queue_index) {
  std::lock_guard lock(mutex_);
  if (queue_index != 0 || quiesced_ || memory_ == nullptr || !queue_) return;
  serve_locked();
}

void EntropyDevice::serve_locked() {
  bool used = false;
  try {
    used = serve(*memory_, *queue_);
  } catch (const VirtqueueError&) {
    if (queue_interrupt_) queue_interrupt_(0);  // for chains failed before the queue broke
    throw;
  }
  if (used && queue_interrupt_) queue_interrupt_(0);
}

bool EntropyDevice::serve(const GuestMemory& memory, Virtqueue& queue) {
  bool used = false;
  uint32_t rejected = 0;
  while (auto chain = queue.next_request(&rejected)) {
    uint32_t written = 0;
    for (const auto& buffer : chain->buffers) {
      if (!buffer.device_writable || written >= kMaxBytesPerRequest) continue;
      uint32_t length = std::min(buffer.len, kMaxBytesPerRequest - written);
      if (!fill_random(memory.slice(buffer.addr, length))) break;
      written += length;
    }
    queue.push_used(chain->head, written);
    used = true;
  }
  return used || rejected > 0;
}

}  // namespace kdom::devices::virtio
