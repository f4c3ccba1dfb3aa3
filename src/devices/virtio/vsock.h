// virtio-vsock (virtio 1.x section 5.10), stream sockets, with Firecracker's "hybrid vsock"
// host side: Unix sockets instead of the host kernel's vsock.
//  - host -> guest: kdom listens on `socket_path`; a host process connects, writes
//    "CONNECT <port>\n", kdom asks the guest's port <port> for a connection and, once the
//    guest accepts, answers "OK <local_port>\n"; bytes then flow both ways.
//  - guest -> host: a guest connection to CID 2 port P is joined to the Unix socket
//    "<socket_path>_P", which a host process listens on.
// Every host socket is non-blocking and watched by the device's own epoll instance
// (backend_fd()), which the VMM's device event loop waits on: no host I/O runs in a vCPU
// thread. Memory kdom holds
// for a guest is bounded: per connection the credit it advertises (kBufAlloc), at most
// kMaxConnections connections and kMaxControlPackets replies waiting for receive buffers
// (beyond that the transmit queue is left alone until the guest offers receive buffers).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/vsock_connection.h"
#include "devices/virtio/vsock_packet.h"

namespace kdom::devices::virtio {

struct VsockDeviceConfig {
  uint64_t guest_cid = 0;
  std::string socket_path;
  // A host connection the guest neither accepts nor refuses within this is closed.
  std::chrono::milliseconds connect_timeout{10000};
};

class VsockDevice : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kRxQueue = 0, kTxQueue = 1, kEventQueue = 2;
  static constexpr size_t kMaxConnections = 256;
  static constexpr size_t kMaxControlPackets = 256;
  static constexpr size_t kMaxHandshakes = 64;
  // Host-initiated connections get local ports from here up.
  static constexpr uint32_t kFirstLocalPort = 1u << 30;
  // Passes over the queues and sockets in one process_backend call before yielding.
  static constexpr int kMaxRoundsPerPump = 64;

  // Listens on config.socket_path; throws Error if it exists already or cannot be bound.
  explicit VsockDevice(const VsockDeviceConfig& config);
  ~VsockDevice() override;  // removes the socket file it created

  // Readable when host sockets need attention: then call process_backend().
  int backend_fd() const { return epoll_.get(); }
  void process_backend();

  DeviceType type() const override { return DeviceType::kVsock; }
  uint64_t offered_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize, kQueueSize}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;  // le64 guest_cid
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  void activate(const GuestMemory& memory, uint64_t negotiated_features,
                std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                ConfigInterrupt config_interrupt) override;
  // Only wakes process_backend (in the event loop): no host I/O in the notifying thread.
  void notify_queue(uint16_t queue_index) override;
  void reset() override;
  // Where process_backend reports a queue it found broken (the transport then asks the
  // driver for a reset); it serves nothing more until reset.
  void set_failure_handler(DeviceFailure failure) override { failure_ = std::move(failure); }

  // While quiesced, process_backend still serves the host side (accepts, handshakes, writes
  // to host sockets) but touches no queue; resume() wakes it to look at the rings.
  void quiesce() override;
  void resume() override;
  // {"guest_cid": the CID the guest knows, "spare_rx": bool with "spare_rx_head" (a receive
  // chain taken and not used)}. The host-side connections cannot cross a save: load_state
  // refuses a state for another CID, and after it and activate() the next process_backend
  // sends the guest a VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue (virtio 5.10.6.6),
  // so it drops its connections and reads the CID again, and logs that it did; with no event
  // buffer there yet it is sent once the guest offers one.
  nlohmann::json save_state() const override;
  void load_state(const nlohmann::json& state) override;
  // Whether a transport reset waits for an event buffer (for tests).
  bool transport_reset_pending() const { return transport_reset_pending_; }

  // For tests (no locking): handles one packet as if the guest had sent it, queuing any reply.
  void handle_guest_packet(const VsockTxPacket& packet);
  size_t connection_count() const { return connections_.size(); }
  size_t control_packet_count() const { return control_.size(); }
  const std::deque<VsockHeader>& control_packets() const { return control_; }
  // Moves packets to the guest and data between sockets and queues (mutex held by callers).
  void pump();
  // A queue broke (Virtqueue::broken): nothing is served until reset.
  bool broken() const;

 private:
  // process_backend's work (mutex held): returns why a queue broke, or empty.
  std::string serve_backend_locked();
  using Key = std::pair<uint32_t, uint32_t>;  // (local port, guest port)
  struct Handshake {
    UniqueFd fd;
  };
  void accept_host_connections();
  void read_handshake(int fd);
  void process_tx();
  bool send_data(VsockConnection& connection);
  void queue_packet(const VsockHeader& header);
  void reply_rst(const VsockHeader& to);
  // Forgets the connection and closes its host socket; `why`, when given, is logged (a
  // protocol violation or a host socket failure, not a normal close).
  void close_connection(const Key& key, bool send_rst, const char* why = nullptr);
  bool watch(int fd);  // false if epoll refused it
  uint32_t allocate_local_port();
  std::optional<DescriptorChain> take_rx();
  void kick();
  void arm_connect_timer();
  void expire_connects();
  // Puts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in the event queue's next buffer, if there is one.
  void send_transport_reset();

  VsockDeviceConfig config_;
  UniqueFd epoll_;
  UniqueFd kick_;  // eventfd in epoll_: more work for process_backend
  UniqueFd connect_timer_;  // timerfd in epoll_: look for host connections the guest ignored
  UniqueFd listener_;
  bool created_socket_ = false;

  mutable std::mutex mutex_;
  bool quiesced_ = false;
  // Set by activate after load_state: the guest must hear that its connections are gone.
  // Atomic: notify_queue reads it in a vCPU thread, without the lock.
  std::atomic<bool> transport_reset_pending_{false};
  // From load_state, for the next activate.
  bool restored_ = false;
  std::optional<uint16_t> restored_spare_rx_;
  const GuestMemory* memory_ = nullptr;
  std::vector<std::shared_ptr<Virtqueue>> queues_;
  DeviceFailure failure_;
  QueueInterrupt queue_interrupt_;
  std::map<Key, std::unique_ptr<VsockConnection>> connections_;
  // Why connections were closed: a guest can open and misuse connections without end.
  CappedLog close_log_{"vsock: closed connections", 20};
  std::unordered_map<int, Key> connection_by_fd_;
  std::unordered_map<int, Handshake> handshakes_;
  std::deque<VsockHeader> control_;       // packets without payload waiting for rx buffers
  std::optional<DescriptorChain> spare_rx_;  // an rx chain taken but not used
  uint32_t next_local_port_ = kFirstLocalPort;
  bool rx_used_ = false, tx_used_ = false;
};

}  // namespace kdom::devices::virtio
