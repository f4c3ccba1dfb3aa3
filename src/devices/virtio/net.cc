// virtio-net device: features and config space, receive (back end -> guest, mergeable
// buffers or one chain per frame) and transmit (guest -> back end, gathered straight from
// guest memory).
#include "devices/virtio/net.h"

#include <sys/timerfd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "devices/net/announce.h"
#include "snapshot/state_json.h"

namespace kdom::devices::virtio {

MacAddress default_mac(uint32_t index) {
  return {0x02, 0x6b, 0x64, 0x00, static_cast<uint8_t>(index >> 8), static_cast<uint8_t>(index)};
}

std::string format_mac(const MacAddress& mac) {
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
                mac[5]);
  return text;
}

unsigned net_offload_flags(uint64_t driver_features) {
  if (!(driver_features & kNetFeatureGuestCsum)) return 0;
  unsigned flags = net::kOffloadCsum;
  if (driver_features & kNetFeatureGuestTso4) flags |= net::kOffloadTso4;
  if (driver_features & kNetFeatureGuestTso6) flags |= net::kOffloadTso6;
  if ((driver_features & kNetFeatureGuestEcn) && (flags & (net::kOffloadTso4 | net::kOffloadTso6)))
    flags |= net::kOffloadTsoEcn;
  return flags;
}

NetDevice::NetDevice(NetDeviceConfig config, std::unique_ptr<net::NetBackend> backend, BackendWatch watch)
    : config_(std::move(config)), backend_(std::move(backend)), watch_(std::move(watch)), frame_(kMaxFrameBytes) {
  if (!backend_) throw Error("virtio-net: no back end");
  if (!config_.rate_limit.unlimited())
    rate_timer_.reset(check_syscall(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC),
                                    "virtio-net: timerfd for the rate limiter"));
}

NetDevice::~NetDevice() {
  std::lock_guard lock(mutex_);
  // The owner's event loop may be gone already; stopping it is the owner's business then.
  watching_ = false;
}

uint64_t NetDevice::offered_features() const {
  return kFeatureVersion1 | kFeatureRingIndirectDesc | kFeatureRingEventIdx | kNetFeatureMac | kNetFeatureStatus |
         kNetFeatureMrgRxbuf | kNetFeatureCsum | kNetFeatureGuestCsum | kNetFeatureHostTso4 | kNetFeatureHostTso6 |
         kNetFeatureHostEcn | kNetFeatureGuestTso4 | kNetFeatureGuestTso6 | kNetFeatureGuestEcn;
}

void NetDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  NetConfigSpace space{};
  std::memcpy(space.mac, config_.mac.data(), sizeof(space.mac));
  space.status = kNetStatusLinkUp;
  space.max_virtqueue_pairs = 1;
  read_config_image({reinterpret_cast<const uint8_t*>(&space), sizeof(space)}, offset, data);
}

void NetDevice::activate(const GuestMemory& memory, uint64_t negotiated_features,
                         std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                         ConfigInterrupt) {
  if (queues.size() != 2)
    throw Error("virtio-net " + backend_->describe() + ": activated with " + std::to_string(queues.size()) +
                " queues, expected 2");
  std::lock_guard lock(mutex_);
  if (restored_) {
    // Heads a saved state holds must lie inside the queues the driver set up now.
    const std::string what = "virtio-net " + format_mac(config_.mac);
    auto check = [&](uint16_t head, uint16_t index, const char* field) {
      const std::shared_ptr<Virtqueue>& queue = queues[index];
      if (!queue)
        throw snapshot::StateError("saved state of " + what + ": '" + field + "' without queue " +
                                   std::to_string(index));
      if (head >= queue->config().size)
        throw snapshot::StateError("saved state of " + what + ": '" + field + "' head " + std::to_string(head) +
                                   " is outside queue " + std::to_string(index) + " of size " +
                                   std::to_string(queue->config().size));
    };
    for (uint16_t head : restored_->rx_heads) check(head, kRxQueue, "rx_chains");
    if (restored_->rx_heads.size() > 1 && !(negotiated_features & kNetFeatureMrgRxbuf))
      throw snapshot::StateError("saved state of " + what + ": 'rx_chains' holds " +
                                 std::to_string(restored_->rx_heads.size()) +
                                 " chains for one frame without mergeable receive buffers");
    if (restored_->tx_head) check(*restored_->tx_head, kTxQueue, "tx_held_head");
  }
  clear_locked();
  backend_->set_offload(net_offload_flags(negotiated_features));
  quiesced_ = false;
  memory_ = &memory;
  rx_queue_ = queues[kRxQueue];
  tx_queue_ = queues[kTxQueue];
  queue_interrupt_ = std::move(queue_interrupt);
  mergeable_ = (negotiated_features & kNetFeatureMrgRxbuf) != 0;
  guest_csum_ = (negotiated_features & kNetFeatureGuestCsum) != 0;
  if (rate_timer_.valid()) {
    rx_limiter_.emplace(config_.rate_limit, RateClock::now());
    tx_limiter_.emplace(config_.rate_limit, RateClock::now());
    if (watch_) watch_(rate_timer_.get(), [this] { on_rate_timer(); });
  }
  if (!restored_) {
    if (rx_queue_) watch_backend_locked(true);
    return;
  }
  take_restored_chains_locked();
  // What the saved device held goes on at once: the guest may not notify again for it.
  const std::string failure = serve_both_locked();
  if (!failure.empty()) throw VirtqueueError(failure);
}

void NetDevice::take_restored_chains_locked() {
  Restored restored = std::move(*restored_);
  restored_.reset();
  bool used = false;
  if (rx_queue_) {
    std::copy(restored.frame.begin(), restored.frame.end(), frame_.begin());
    frame_bytes_ = restored.frame.size();
    for (uint16_t head : restored.rx_heads) {
      try {
        DescriptorChain chain = rx_queue_->chain_at(head);
        // Checked as deliver_pending_locked checks a chain it takes.
        const uint64_t writable = chain.writable_bytes();
        if (chain.readable_bytes() > 0 || writable == 0 || (rx_chains_.empty() && writable < sizeof(NetHeader))) {
          fail_chain_locked(*rx_queue_, head, used);
          continue;
        }
        rx_chain_bytes_ += writable;
        rx_chains_.push_back(std::move(chain));
      } catch (const VirtqueueError& error) {
        if (!error.head()) throw;
        fail_chain_locked(*rx_queue_, head, used);
      }
    }
    if (used && queue_interrupt_) queue_interrupt_(kRxQueue);
  }
  if (tx_queue_ && restored.tx_head) {
    try {
      tx_held_ = tx_queue_->chain_at(*restored.tx_head);
    } catch (const VirtqueueError& error) {
      if (!error.head()) throw;
      bool tx_used = false;
      fail_chain_locked(*tx_queue_, *restored.tx_head, tx_used);
      if (queue_interrupt_) queue_interrupt_(kTxQueue);
    }
  }
}

std::string NetDevice::serve_both_locked() {
  std::string failure;
  bool rx_used = false, tx_used = false;
  uint16_t queue_index = kRxQueue;
  try {
    if (rx_queue_ && !rx_queue_->broken()) rx_used = receive_locked();
    queue_index = kTxQueue;
    if (tx_queue_ && !tx_queue_->broken()) tx_used = transmit_locked();
  } catch (const Error& error) {
    failure = stop_broken_queue_locked(queue_index, error.what());
  }
  if (rx_used && queue_interrupt_) queue_interrupt_(kRxQueue);
  if (tx_used && queue_interrupt_) queue_interrupt_(kTxQueue);
  return failure;
}

void NetDevice::quiesce() {
  std::lock_guard lock(mutex_);
  quiesced_ = true;
  watch_backend_locked(false);
}

void NetDevice::resume() {
  std::string failure;
  {
    std::lock_guard lock(mutex_);
    if (!quiesced_) return;
    quiesced_ = false;
    if (memory_ == nullptr) return;
    // Receiving drains the back end and watches it again (or waits for buffers or the rate).
    failure = serve_both_locked();
  }
  if (!failure.empty() && failure_) failure_(failure);
}

nlohmann::json NetDevice::save_state() const {
  std::lock_guard lock(mutex_);
  nlohmann::json rx_chains = nlohmann::json::array();
  for (const DescriptorChain& chain : rx_chains_) rx_chains.push_back({{"head", chain.head}});
  return {{"mac", format_mac(config_.mac)},
          {"frame", snapshot::bytes_to_hex(std::span<const uint8_t>(frame_.data(), frame_bytes_))},
          {"rx_chains", std::move(rx_chains)},
          {"tx_held", tx_held_.has_value()},
          {"tx_held_head", tx_held_ ? tx_held_->head : 0}};
}

void NetDevice::load_state(const nlohmann::json& state) {
  const std::string what = "virtio-net " + format_mac(config_.mac);
  const std::string mac = snapshot::state_string(state, "mac", what);
  if (mac != format_mac(config_.mac))
    throw snapshot::StateError("saved state of " + what + ": 'mac' is " + mac.substr(0, 17) +
                               ", another network device");
  Restored restored;
  restored.frame = snapshot::state_bytes_up_to(state, "frame", what, kMaxFrameBytes);
  if (!restored.frame.empty() && restored.frame.size() < sizeof(NetHeader))
    throw snapshot::StateError("saved state of " + what + ": 'frame' is shorter than its virtio-net header");
  const nlohmann::json& rx_chains = snapshot::state_array(state, "rx_chains", what);
  if (rx_chains.size() > kQueueSize)
    throw snapshot::StateError("saved state of " + what + ": 'rx_chains' holds more chains than a queue");
  std::vector<bool> seen(kQueueSize);
  for (const nlohmann::json& entry : rx_chains) {
    const auto head = static_cast<uint16_t>(snapshot::state_u64(entry, "head", what + " rx_chains", kQueueSize - 1u));
    if (seen[head])
      throw snapshot::StateError("saved state of " + what + ": 'rx_chains' holds head " + std::to_string(head) +
                                 " twice");
    seen[head] = true;
    restored.rx_heads.push_back(head);
  }
  if (!restored.rx_heads.empty() && restored.frame.empty())
    throw snapshot::StateError("saved state of " + what + ": 'rx_chains' without a frame for them");
  if (snapshot::state_bool(state, "tx_held", what))
    restored.tx_head = static_cast<uint16_t>(snapshot::state_u64(state, "tx_held_head", what, kQueueSize - 1u));
  std::lock_guard lock(mutex_);
  if (memory_ != nullptr) throw Error(what + ": a saved state is loaded before activation, not while active");
  restored_ = std::move(restored);
}

void NetDevice::reset() {
  std::lock_guard lock(mutex_);
  clear_locked();
  quiesced_ = false;
  restored_.reset();
  try {
    backend_->set_offload(0);
  } catch (const Error& error) {
    log_line(std::string("virtio-net: ") + error.what());
  }
}

namespace {
// What a NIC that left its domain has instead of its TAP: no fd, nothing to read, nothing sent.
class ClosedBackend : public net::NetBackend {
 public:
  explicit ClosedBackend(std::string was) : was_(std::move(was)) {}
  std::string describe() const override { return was_ + " (closed)"; }
  int fd() const override { return -1; }
  void set_offload(unsigned) override {}
  ssize_t read_frame(std::span<uint8_t>) override { return -EAGAIN; }
  ssize_t write_frame(std::span<const iovec>) override { return -ENODEV; }

 private:
  std::string was_;
};
}  // namespace

void NetDevice::announce() {
  const std::vector<uint8_t> frame = net::rarp_announcement(config_.mac);
  const NetHeader header{};  // nothing to offload
  const iovec parts[] = {{const_cast<NetHeader*>(&header), sizeof(header)},
                         {const_cast<uint8_t*>(frame.data()), frame.size()}};
  std::lock_guard lock(mutex_);  // the back end may be closed meanwhile (release_host_side)
  const ssize_t sent = backend_->write_frame(parts);
  if (sent < 0)
    throw SystemError("virtio-net " + backend_->describe() + ": cannot send its announcement", static_cast<int>(-sent));
}

void NetDevice::release_host_side() {
  std::lock_guard lock(mutex_);
  clear_locked();
  backend_ = std::make_unique<ClosedBackend>(backend_->describe());
}

void NetDevice::clear_locked() {
  watch_backend_locked(false);
  if (rate_timer_.valid()) {
    const itimerspec off{};
    ::timerfd_settime(rate_timer_.get(), 0, &off, nullptr);
    if (watch_ && rx_limiter_) watch_(rate_timer_.get(), nullptr);
  }
  rx_limiter_.reset();
  tx_limiter_.reset();
  frame_paid_ = rx_throttled_ = tx_throttled_ = false;
  tx_held_.reset();
  memory_ = nullptr;
  rx_queue_.reset();
  tx_queue_.reset();
  queue_interrupt_ = nullptr;
  mergeable_ = guest_csum_ = false;
  frame_bytes_ = 0;
  rx_chains_.clear();
  rx_chain_bytes_ = 0;
}

void NetDevice::watch_backend_locked(bool on) {
  if (on == watching_) return;
  if (watch_) {
    if (on)
      watch_(backend_->fd(), [this] { on_backend_readable(); });
    else
      watch_(backend_->fd(), nullptr);
  }
  watching_ = on;
}

std::string NetDevice::describe_state() const {
  // Called to debug a stall: a lock held for good is itself the answer, so do not wait on it.
  std::unique_lock lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return "virtio-net " + backend_->describe() + ": busy (its lock is held)";
  return "virtio-net " + backend_->describe() + ": watching_backend=" + std::to_string(watching_) +
         " frame_held=" + std::to_string(frame_bytes_) + " rx_chains_held=" + std::to_string(rx_chains_.size()) +
         " rx_broken=" + std::to_string(rx_queue_ && rx_queue_->broken()) +
         " tx_broken=" + std::to_string(tx_queue_ && tx_queue_->broken()) +
         " rx_frames=" + std::to_string(stats_.rx_frames) + " tx_frames=" + std::to_string(stats_.tx_frames) +
         " rx_dropped=" + std::to_string(stats_.rx_dropped) + " tx_dropped=" + std::to_string(stats_.tx_dropped);
}

NetDevice::Stats NetDevice::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

bool NetDevice::watching_backend() const {
  std::lock_guard lock(mutex_);
  return watching_;
}

void NetDevice::notify_queue(uint16_t queue_index) {
  std::lock_guard lock(mutex_);
  if (memory_ == nullptr || quiesced_) return;  // resume() serves both queues
  bool used = false;
  try {
    if (queue_index == kRxQueue && rx_queue_ && !rx_queue_->broken()) {
      used = receive_locked();
    } else if (queue_index == kTxQueue && tx_queue_ && !tx_queue_->broken()) {
      used = transmit_locked();
    }
  } catch (const VirtqueueError& error) {
    if (queue_index == kRxQueue) watch_backend_locked(false);
    if (queue_interrupt_) queue_interrupt_(queue_index);
    throw VirtqueueError("virtio-net " + backend_->describe() + " queue " + std::to_string(queue_index) + ": " +
                         error.what());
  }
  if (used && queue_interrupt_) queue_interrupt_(queue_index);
}

std::string NetDevice::stop_broken_queue_locked(uint16_t queue_index, const std::string& what) {
  (queue_index == kRxQueue ? rx_queue_ : tx_queue_)->mark_broken();
  if (queue_index == kRxQueue) watch_backend_locked(false);
  return "virtio-net " + backend_->describe() + " queue " + std::to_string(queue_index) + ": " + what;
}

// The two handlers below run in the event loop, where nothing may escape: a broken queue is
// stopped and reported to the transport (failure_, called outside the lock).
void NetDevice::on_backend_readable() {
  std::string failure;
  {
    std::lock_guard lock(mutex_);
    // A wake-up already queued when the device was reset or stopped watching.
    if (memory_ == nullptr || quiesced_ || !rx_queue_ || rx_queue_->broken() || !watching_) return;
    bool used = false;
    try {
      used = receive_locked();
    } catch (const Error& error) {
      failure = stop_broken_queue_locked(kRxQueue, error.what());
    }
    if (used && queue_interrupt_) queue_interrupt_(kRxQueue);
  }
  if (!failure.empty() && failure_) failure_(failure);
}

void NetDevice::on_rate_timer() {
  std::string failure;
  {
    std::lock_guard lock(mutex_);
    uint64_t expirations = 0;
    if (::read(rate_timer_.get(), &expirations, sizeof(expirations)) < 0) {
      // Not expired (a stale wake-up): nothing to do.
    }
    if (memory_ == nullptr || quiesced_) return;  // resume() goes on with what was held back
    bool rx_used = false, tx_used = false;
    uint16_t queue_index = kRxQueue;
    try {
      if (rx_throttled_ && rx_queue_ && !rx_queue_->broken()) {
        rx_throttled_ = false;
        rx_used = receive_locked();
      }
      queue_index = kTxQueue;
      if (tx_throttled_ && tx_queue_ && !tx_queue_->broken()) {
        tx_throttled_ = false;
        tx_used = transmit_locked();
      }
    } catch (const Error& error) {
      failure = stop_broken_queue_locked(queue_index, error.what());
    }
    if (rx_used && queue_interrupt_) queue_interrupt_(kRxQueue);
    if (tx_used && queue_interrupt_) queue_interrupt_(kTxQueue);
  }
  if (!failure.empty() && failure_) failure_(failure);
}

bool NetDevice::throttled_locked(std::optional<RateLimiter>& limiter, uint64_t bytes) {
  if (!limiter) return false;
  const auto now = RateClock::now();
  if (limiter->try_take(bytes, now)) return false;
  const auto wait = std::max(limiter->wait_for(bytes, now), std::chrono::nanoseconds(1000));
  itimerspec current{};
  ::timerfd_gettime(rate_timer_.get(), &current);
  const auto remaining = std::chrono::seconds(current.it_value.tv_sec) + std::chrono::nanoseconds(current.it_value.tv_nsec);
  if (remaining.count() == 0 || remaining > wait) {
    itimerspec next{};
    next.it_value.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(wait).count();
    next.it_value.tv_nsec = (wait % std::chrono::seconds(1)).count();
    ::timerfd_settime(rate_timer_.get(), 0, &next, nullptr);
  }
  return true;
}

void NetDevice::fail_chain_locked(Virtqueue& queue, uint16_t head, bool& used) {
  queue.push_used(head, 0);
  ++stats_.bad_chains;
  used = true;
}

bool NetDevice::receive_locked() {
  bool used = false;
  for (unsigned frames = 0; frames < kMaxRxFramesPerWake; ++frames) {
    if (frame_bytes_ == 0) {
      const ssize_t n = backend_->read_frame(frame_);
      if (n == -EAGAIN || n == -EWOULDBLOCK) {
        watch_backend_locked(true);  // drained: wait for the next frame
        return used;
      }
      if (n < 0) {
        // A back end that fails (the interface went away) would wake the loop forever.
        log_line("virtio-net " + backend_->describe() + ": read: " + std::strerror(static_cast<int>(-n)) +
                 "; receive stopped");
        watch_backend_locked(false);
        return used;
      }
      if (static_cast<size_t>(n) < sizeof(NetHeader)) {
        ++stats_.rx_dropped;
        continue;
      }
      frame_bytes_ = static_cast<size_t>(n);
    }
    if (!frame_paid_) {
      if (throttled_locked(rx_limiter_, frame_bytes_ - sizeof(NetHeader))) {
        // Keep the frame; the rate timer brings us back.
        rx_throttled_ = true;
        watch_backend_locked(false);
        return used;
      }
      frame_paid_ = true;
    }
    if (deliver_pending_locked(used) == Delivery::kNoBuffers) {
      // Keep the frame; the driver's next receive notification brings us back.
      watch_backend_locked(false);
      return used;
    }
    frame_paid_ = false;
  }
  watch_backend_locked(true);
  return used;
}

NetDevice::Delivery NetDevice::deliver_pending_locked(bool& used) {
  Virtqueue& queue = *rx_queue_;
  // Take chains until they hold the frame: one chain without mergeable buffers.
  while (rx_chain_bytes_ < frame_bytes_ && (mergeable_ || rx_chains_.empty())) {
    if (rx_chains_.size() >= queue.config().size) break;  // every descriptor is ours: cannot grow
    uint32_t rejected = 0;
    std::optional<DescriptorChain> chain = queue.next_request(&rejected);
    if (rejected > 0) {
      stats_.bad_chains += rejected;
      used = true;
    }
    if (!chain) return Delivery::kNoBuffers;
    const uint64_t writable = chain->writable_bytes();
    // A receive chain is all device-writable, and the first one of a frame holds the header.
    if (chain->readable_bytes() > 0 || writable == 0 ||
        (rx_chains_.empty() && writable < sizeof(NetHeader))) {
      fail_chain_locked(queue, chain->head, used);
      continue;
    }
    rx_chain_bytes_ += writable;
    rx_chains_.push_back(std::move(*chain));
  }
  if (rx_chain_bytes_ < frame_bytes_) {
    // Larger than the buffers the guest gives (or can give): drop it, keep the chains.
    ++stats_.rx_dropped;
    frame_bytes_ = 0;
    return Delivery::kDropped;
  }

  // How many chains the frame spans, then the header, then the copy.
  uint16_t chains = 0;
  for (uint64_t room = 0; room < frame_bytes_; ++chains) room += rx_chains_[chains].writable_bytes();
  NetHeader header;
  std::memcpy(&header, frame_.data(), sizeof(header));
  header.num_buffers = chains;
  if (!guest_csum_) header.flags = 0;
  std::memcpy(frame_.data(), &header, sizeof(header));

  size_t offset = 0;
  for (uint16_t i = 0; i < chains; ++i) {
    DescriptorChain chain = std::move(rx_chains_.front());
    rx_chains_.pop_front();
    rx_chain_bytes_ -= chain.writable_bytes();
    uint32_t written = 0;
    for (const VirtqBuffer& buffer : chain.buffers) {
      if (offset == frame_bytes_) break;
      const size_t length = std::min<size_t>(buffer.len, frame_bytes_ - offset);
      memory_->write(buffer.addr, frame_.data() + offset, length);
      offset += length;
      written += static_cast<uint32_t>(length);
    }
    queue.push_used(chain.head, written);
  }
  ++stats_.rx_frames;
  stats_.rx_bytes += frame_bytes_ - sizeof(NetHeader);
  frame_bytes_ = 0;
  used = true;
  return Delivery::kDelivered;
}

bool NetDevice::transmit_locked() {
  Virtqueue& queue = *tx_queue_;
  bool used = false;
  uint32_t rejected = 0;
  std::vector<iovec> parts;
  for (;;) {
    std::optional<DescriptorChain> chain = std::move(tx_held_);
    tx_held_.reset();
    if (!chain) chain = queue.next_request(&rejected);
    if (!chain) break;
    const uint64_t bytes = chain->readable_bytes();
    // A transmit chain is all device-readable: a header, then one frame.
    if (chain->writable_bytes() > 0 || bytes < sizeof(NetHeader) || bytes > kMaxFrameBytes ||
        chain->buffers.size() > kMaxTxBuffers) {
      fail_chain_locked(queue, chain->head, used);
      continue;
    }
    if (throttled_locked(tx_limiter_, bytes - sizeof(NetHeader))) {
      tx_held_ = std::move(chain);
      tx_throttled_ = true;
      break;
    }
    parts.clear();
    for (const VirtqBuffer& buffer : chain->buffers) {
      if (buffer.len == 0) continue;
      const std::span<uint8_t> bytes_in_guest = memory_->slice(buffer.addr, buffer.len);
      parts.push_back(iovec{bytes_in_guest.data(), bytes_in_guest.size()});
    }
    const ssize_t sent = backend_->write_frame(parts);
    if (sent < 0) {
      // The back end refused the frame (a bad offload header, the interface is down, its
      // queue is full): a network may lose frames, the guest's protocols recover.
      if (stats_.tx_dropped++ == 0)
        log_line("virtio-net " + backend_->describe() + ": a frame from the guest was dropped: " +
                 std::strerror(static_cast<int>(-sent)) + " (later drops are only counted)");
    } else {
      ++stats_.tx_frames;
      stats_.tx_bytes += bytes - sizeof(NetHeader);
    }
    queue.push_used(chain->head, 0);
    used = true;
  }
  if (rejected > 0) {
    stats_.bad_chains += rejected;
    used = true;
  }
  return used;
}

}  // namespace kdom::devices::virtio
