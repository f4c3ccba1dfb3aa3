// virtio-net (virtio 1.x section 5.1): an Ethernet interface for the guest, one receive and
// one transmit queue, with frames going to and from a NetBackend (a TAP interface). The
// device offers the MAC address and link status in its config space, mergeable receive
// buffers, and checksum/TSO offloads in both directions; the offloads the driver accepts for
// its own receive side are handed to the back end (TUNSETOFFLOAD) at activation.
//
// Threads: the VMM's event loop runs everything: it watches the back end's fd
// (on_backend_readable), the queues' notification eventfds (notify_queue; a notification that
// arrives as an MMIO exit is passed to the same eventfd) and the rate timer. When the guest
// has no receive buffers left, the device keeps the frame it holds, stops watching the back
// end (so the loop does not spin), and starts again when the driver notifies the receive
// queue.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "devices/net/backend.h"
#include "devices/rate_limiter.h"
#include "devices/virtio/virtio_device.h"

namespace kdom::devices::virtio {

// Feature bits (spec 5.1.3).
inline constexpr uint64_t kNetFeatureCsum = 1ULL << 0;        // device takes partial checksums
inline constexpr uint64_t kNetFeatureGuestCsum = 1ULL << 1;   // driver takes partial checksums
inline constexpr uint64_t kNetFeatureMac = 1ULL << 5;
inline constexpr uint64_t kNetFeatureGuestTso4 = 1ULL << 7;
inline constexpr uint64_t kNetFeatureGuestTso6 = 1ULL << 8;
inline constexpr uint64_t kNetFeatureGuestEcn = 1ULL << 9;
inline constexpr uint64_t kNetFeatureHostTso4 = 1ULL << 11;
inline constexpr uint64_t kNetFeatureHostTso6 = 1ULL << 12;
inline constexpr uint64_t kNetFeatureHostEcn = 1ULL << 13;
inline constexpr uint64_t kNetFeatureMrgRxbuf = 1ULL << 15;
inline constexpr uint64_t kNetFeatureStatus = 1ULL << 16;

inline constexpr uint16_t kNetStatusLinkUp = 1;
inline constexpr uint8_t kNetHeaderFlagNeedsCsum = 1;
inline constexpr uint8_t kNetHeaderFlagDataValid = 2;

#pragma pack(push, 1)
// struct virtio_net_hdr_v1: in front of every frame in both directions.
struct NetHeader {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;  // receive: how many chains the frame spans
};
// struct virtio_net_config, up to max_virtqueue_pairs.
struct NetConfigSpace {
  uint8_t mac[6];
  uint16_t status;
  uint16_t max_virtqueue_pairs;
};
#pragma pack(pop)
static_assert(sizeof(NetHeader) == 12);
static_assert(sizeof(NetConfigSpace) == 10);

using MacAddress = std::array<uint8_t, 6>;

// The MAC address of the index-th (0-based) network device when the user gives none:
// 02:6b:64:00:00:NN ("kd", locally administered, unicast), NN = index & 0xff, plus
// index >> 8 in the byte before it.
MacAddress default_mac(uint32_t index);
std::string format_mac(const MacAddress& mac);

// The back end offload flags (net::kOffload*) that the driver's features allow: partial
// checksums with GUEST_CSUM, and TSO4/TSO6/ECN frames only together with it.
unsigned net_offload_flags(uint64_t driver_features);

struct NetDeviceConfig {
  MacAddress mac{};
  std::string id;        // the user's name for the device (--net ...,id=)
  RateLimit rate_limit;  // each direction: frame bytes and frames per second (0: unlimited)
};

// Asks the owner to watch `fd` for readability and call `on_readable` in its event loop,
// or (on_readable empty) to stop watching it.
using BackendWatch = std::function<void(int fd, std::function<void()> on_readable)>;

class NetDevice : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kRxQueue = 0;
  static constexpr uint16_t kTxQueue = 1;
  // The largest frame either way, header included: a 64 KiB TSO frame with an Ethernet and a
  // VLAN header.
  static constexpr uint32_t kMaxFrameBytes = sizeof(NetHeader) + 65536 + 18;
  // Frames taken from the back end per wake-up, so transmit gets its turn under load.
  static constexpr unsigned kMaxRxFramesPerWake = 256;
  // Guest buffers per transmitted frame; Linux uses at most MAX_SKB_FRAGS + 2.
  static constexpr size_t kMaxTxBuffers = 1024;

  // `watch` may be empty (unit tests call on_backend_readable themselves).
  NetDevice(NetDeviceConfig config, std::unique_ptr<net::NetBackend> backend, BackendWatch watch);
  ~NetDevice() override;

  DeviceType type() const override { return DeviceType::kNet; }
  uint64_t offered_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  // Applies the offloads the driver accepted to the back end and starts watching it.
  void activate(const GuestMemory& memory, uint64_t negotiated_features,
                std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                ConfigInterrupt config_interrupt) override;
  // Receive queue: the driver added buffers, deliver what waits. Transmit queue: send every
  // available frame. A queue the driver broke is stopped and VirtqueueError thrown.
  void notify_queue(uint16_t queue_index) override;
  void reset() override;
  // Closes the back end (the TAP), which a closed one stands in for from now on.
  void release_host_side() override;
  // Where a queue found broken outside notify_queue (receiving from the back end, the rate
  // timer) is reported, at once: the transport asks the driver for a reset.
  void set_failure_handler(DeviceFailure failure) override { failure_ = std::move(failure); }

  // While quiesced the back end is not watched and notifications, the rate timer and
  // on_backend_readable do nothing; resume() receives (the frame held first) and transmits
  // what the rings hold, and watches the back end again.
  void quiesce() override;
  void resume() override;
  // {"mac": "02:6b:...", "frame": hex (the frame read from the back end and not delivered,
  //  virtio-net header first; "" none), "rx_chains": [{"head": H}, ...] (receive chains taken
  //  for it and not used), "tx_held": bool with "tx_held_head" (a transmit chain the rate
  //  limiter held back)}. load_state refuses another MAC; activate() then takes the chains
  // again from the descriptor table (a StateError, before anything changes, for a head
  // outside its queue), delivers the frame and transmits the held chain as the rate allows.
  nlohmann::json save_state() const override;
  void load_state(const nlohmann::json& state) override;

  // The back end has frames: deliver them while the guest has buffers.
  void on_backend_readable();
  // The rate limiter's timer expired: go on with whatever direction it held back.
  void on_rate_timer();
  // Sends the NIC's RARP announcement (net::rarp_announcement) out of the back end, for a
  // domain that has just moved host: outside the guest's transmit queue and its rate limit,
  // paused or not. Throws SystemError naming the back end when it refuses the frame.
  void announce();

  struct Stats {
    uint64_t rx_frames = 0, rx_bytes = 0, rx_dropped = 0;
    uint64_t tx_frames = 0, tx_bytes = 0, tx_dropped = 0;
    uint64_t bad_chains = 0;  // malformed chains returned unused
  };
  Stats stats() const;
  std::string describe_state() const override;
  // Whether the back end is being watched (false while the guest has no receive buffers).
  bool watching_backend() const;
  const MacAddress& mac() const { return config_.mac; }
  const std::string& id() const { return config_.id; }
  std::string backend_name() const { return backend_->describe(); }

 private:
  enum class Delivery { kDelivered, kDropped, kNoBuffers };
  // Each returns whether it used chains (the queue's interrupt is due).
  bool receive_locked();
  Delivery deliver_pending_locked(bool& used);
  bool transmit_locked();
  void watch_backend_locked(bool on);
  void fail_chain_locked(Virtqueue& queue, uint16_t head, bool& used);
  // Stops a queue found broken in an event-loop handler; returns the report for failure_.
  std::string stop_broken_queue_locked(uint16_t queue_index, const std::string& what);
  void clear_locked();
  // Takes the chains a loaded state held again (activate, after clear_locked).
  void take_restored_chains_locked();
  // Receives and transmits what waits, with interrupts; returns a broken queue's report.
  std::string serve_both_locked();
  // Whether `bytes` more must wait for `limiter` (then the rate timer is armed); takes the
  // tokens otherwise.
  bool throttled_locked(std::optional<RateLimiter>& limiter, uint64_t bytes);

  NetDeviceConfig config_;
  std::unique_ptr<net::NetBackend> backend_;
  BackendWatch watch_;
  DeviceFailure failure_;

  // Serialises the event loop (back end, ioeventfds) with vCPUs (MMIO notify, activate, reset).
  mutable std::mutex mutex_;
  bool watching_ = false;
  Stats stats_;

  // Set by activate, cleared by reset.
  const GuestMemory* memory_ = nullptr;
  std::shared_ptr<Virtqueue> rx_queue_;
  std::shared_ptr<Virtqueue> tx_queue_;
  QueueInterrupt queue_interrupt_;
  bool mergeable_ = false;
  bool guest_csum_ = false;

  // Rate limiting (only with config_.rate_limit): a frame held back in each direction (the
  // received one in frame_, paid for or not; a transmit chain in tx_held_) until the timer.
  UniqueFd rate_timer_;
  std::optional<RateLimiter> rx_limiter_;
  std::optional<RateLimiter> tx_limiter_;
  bool frame_paid_ = false;
  bool rx_throttled_ = false;
  bool tx_throttled_ = false;
  std::optional<DescriptorChain> tx_held_;

  // The frame read from the back end and not yet delivered (0: none), and receive chains taken
  // from the queue but not yet used (the frame needs more, or was dropped as too large).
  std::vector<uint8_t> frame_;
  size_t frame_bytes_ = 0;
  std::deque<DescriptorChain> rx_chains_;
  uint64_t rx_chain_bytes_ = 0;

  bool quiesced_ = false;
  // From load_state, for the next activate.
  struct Restored {
    std::vector<uint8_t> frame;
    std::vector<uint16_t> rx_heads;
    std::optional<uint16_t> tx_head;
  };
  std::optional<Restored> restored_;
};

}  // namespace kdom::devices::virtio
