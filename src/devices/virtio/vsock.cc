// virtio-vsock device and its hybrid Unix-socket host side.
#include "devices/virtio/vsock.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/unix_socket.h"
#include "base/eventfd.h"
#include "base/log.h"
#include "snapshot/state_json.h"

namespace kdom::devices::virtio {

namespace {

constexpr size_t kHandshakeMaxLine = 64;

// Parses "CONNECT <port>" (without the newline); nullopt if it is anything else.
std::optional<uint32_t> parse_connect(const std::string& line) {
  const std::string verb = "CONNECT ";
  if (line.rfind(verb, 0) != 0) return std::nullopt;
  std::string digits = line.substr(verb.size());
  if (digits.empty() || digits.size() > 10 || digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  uint64_t port = std::stoull(digits);
  if (port > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(port);
}

}  // namespace

VsockDevice::VsockDevice(const VsockDeviceConfig& config)
    : config_(config),
      epoll_(check_syscall(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
      kick_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")),
      connect_timer_(check_syscall(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), "timerfd_create")) {
  struct stat info{};
  if (lstat(config_.socket_path.c_str(), &info) == 0)
    throw Error("--vsock socket '" + config_.socket_path + "' already exists; remove it or choose another path");
  sockaddr_un address = unix_socket_address(config_.socket_path, "vsock socket");
  listener_.reset(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket"));
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
    throw SystemError("cannot bind vsock socket '" + config_.socket_path + "'", errno);
  created_socket_ = true;
  try {
    check_syscall(::listen(listener_.get(), 64), "listen on " + config_.socket_path);
    if (!watch(listener_.get())) throw SystemError("epoll_ctl", errno);
    epoll_event event{};
    event.events = EPOLLIN;  // level-triggered: pending until process_backend reads it
    event.data.fd = kick_.get();
    check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, kick_.get(), &event), "epoll_ctl");
    event.data.fd = connect_timer_.get();
    check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, connect_timer_.get(), &event), "epoll_ctl");
  } catch (...) {
    ::unlink(config_.socket_path.c_str());  // no destructor runs for a half-built device
    throw;
  }
}

VsockDevice::~VsockDevice() {
  if (created_socket_) ::unlink(config_.socket_path.c_str());
}

bool VsockDevice::watch(int fd) {
  epoll_event event{};
  // Edge-triggered: readiness is remembered per connection, so a socket kdom cannot serve
  // now (no credit, no receive buffers) does not keep the event loop spinning.
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.fd = fd;
  return epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) == 0;
}

uint64_t VsockDevice::offered_features() const {
  return kFeatureVersion1 | kFeatureRingIndirectDesc | kFeatureRingEventIdx;
}

void VsockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  uint8_t config[8];
  std::memcpy(config, &config_.guest_cid, sizeof(config));
  read_config_image(config, offset, data);
}

void VsockDevice::activate(const GuestMemory& memory, uint64_t, std::vector<std::shared_ptr<Virtqueue>> queues,
                           QueueInterrupt queue_interrupt, ConfigInterrupt) {
  if (queues.size() != 3) throw Error("virtio-vsock: activated with " + std::to_string(queues.size()) + " queues");
  std::lock_guard lock(mutex_);
  if (restored_spare_rx_) {
    // Checked against the receive queue the driver set up now, before anything changes.
    if (!queues[kRxQueue])
      throw snapshot::StateError("saved state of virtio-vsock: 'spare_rx_head' without a receive queue");
    if (*restored_spare_rx_ >= queues[kRxQueue]->config().size)
      throw snapshot::StateError("saved state of virtio-vsock: 'spare_rx_head' " +
                                 std::to_string(*restored_spare_rx_) + " is outside a receive queue of size " +
                                 std::to_string(queues[kRxQueue]->config().size));
  }
  memory_ = &memory;
  queues_ = std::move(queues);
  queue_interrupt_ = std::move(queue_interrupt);
  quiesced_ = false;
  if (!restored_) return;
  restored_ = false;
  transport_reset_pending_ = true;  // sent from process_backend, in the event loop
  if (restored_spare_rx_) {
    const uint16_t head = *restored_spare_rx_;
    restored_spare_rx_.reset();
    try {
      spare_rx_ = queues_[kRxQueue]->chain_at(head);
    } catch (const VirtqueueError& error) {
      if (!error.head()) throw;
      queues_[kRxQueue]->push_used(head, 0);  // malformed now: returned unused
      if (queue_interrupt_) queue_interrupt_(kRxQueue);
    }
  }
  kick();
}

void VsockDevice::quiesce() {
  std::lock_guard lock(mutex_);
  quiesced_ = true;
}

void VsockDevice::resume() {
  std::lock_guard lock(mutex_);
  if (!quiesced_) return;
  quiesced_ = false;
  kick();  // the rings may hold what came meanwhile
}

nlohmann::json VsockDevice::save_state() const {
  std::lock_guard lock(mutex_);
  return {{"guest_cid", config_.guest_cid},
          {"spare_rx", spare_rx_.has_value()},
          {"spare_rx_head", spare_rx_ ? spare_rx_->head : 0}};
}

void VsockDevice::load_state(const nlohmann::json& state) {
  const std::string what = "virtio-vsock";
  const uint64_t cid = snapshot::state_u64(state, "guest_cid", what);
  if (cid != config_.guest_cid)
    throw snapshot::StateError("saved state of " + what + ": 'guest_cid' is " + std::to_string(cid) +
                               ", but this device's guest CID is " + std::to_string(config_.guest_cid));
  std::optional<uint16_t> spare;
  if (snapshot::state_bool(state, "spare_rx", what))
    spare = static_cast<uint16_t>(snapshot::state_u64(state, "spare_rx_head", what, kQueueSize - 1u));
  std::lock_guard lock(mutex_);
  if (memory_ != nullptr) throw Error(what + ": a saved state is loaded before activation, not while active");
  restored_ = true;
  restored_spare_rx_ = spare;
}

void VsockDevice::send_transport_reset() {
  const std::shared_ptr<Virtqueue>& events = queues_[kEventQueue];
  if (!events || events->broken()) {
    // Nowhere to say it: the guest's connections stay until it notices them dead.
    transport_reset_pending_ = false;
    log_line("virtio-vsock (guest CID " + std::to_string(config_.guest_cid) +
             "): restored without its host connections; the guest has no event queue for a transport reset");
    return;
  }
  uint32_t rejected = 0;
  bool used = false;
  while (auto chain = events->next_request(&rejected)) {
    // struct virtio_vsock_event: le32 id.
    const uint32_t transport_reset = kVsockEventTransportReset;
    if (chain->writable_bytes() < sizeof(transport_reset) ||
        !write_to_chain(*memory_, *chain, 0, &transport_reset, sizeof(transport_reset))) {
      events->push_used(chain->head, 0);  // too small for an event
      used = true;
      continue;
    }
    events->push_used(chain->head, sizeof(transport_reset));
    used = true;
    transport_reset_pending_ = false;
    log_line("virtio-vsock (guest CID " + std::to_string(config_.guest_cid) +
             "): restored; its host connections did not survive the save, so the guest was sent a transport reset");
    break;
  }
  if ((used || rejected > 0) && queue_interrupt_) queue_interrupt_(kEventQueue);
}

void VsockDevice::reset() {
  std::lock_guard lock(mutex_);
  memory_ = nullptr;
  queues_.clear();
  queue_interrupt_ = nullptr;
  quiesced_ = false;
  transport_reset_pending_ = false;
  restored_ = false;
  restored_spare_rx_.reset();
  connections_.clear();  // closes the host sockets: their peers see end of file
  connection_by_fd_.clear();
  control_.clear();
  spare_rx_.reset();
}

void VsockDevice::notify_queue(uint16_t queue_index) {
  // Event buffers matter only to a transport reset that waits for one (after a restore).
  if (queue_index == kEventQueue && !transport_reset_pending_) return;
  kick();  // the work (which does host I/O) runs in process_backend, in the event loop
}

void VsockDevice::kick() {
  signal_eventfd(kick_.get());
}

void VsockDevice::process_backend() {
  std::string failure;
  {
    std::lock_guard lock(mutex_);
    failure = serve_backend_locked();
  }
  // Outside the lock: the transport may call back into the device.
  if (!failure.empty() && failure_) failure_("virtio-vsock: " + failure);
}

std::string VsockDevice::serve_backend_locked() {
  epoll_event events[32];
  int count;
  while ((count = epoll_wait(epoll_.get(), events, 32, 0)) > 0) {
    for (int i = 0; i < count; ++i) {
      int fd = events[i].data.fd;
      if (fd == kick_.get()) {
        drain_eventfd(kick_.get());
      } else if (fd == connect_timer_.get()) {
        uint64_t expirations;
        [[maybe_unused]] ssize_t n = ::read(connect_timer_.get(), &expirations, sizeof(expirations));
        expire_connects();
      } else if (fd == listener_.get()) {
        accept_host_connections();
      } else if (handshakes_.count(fd)) {
        read_handshake(fd);
      } else if (auto it = connection_by_fd_.find(fd); it != connection_by_fd_.end()) {
        const Key key = it->second;
        auto& connection = *connections_.at(key);
        if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) connection.host_readable = true;
        if (events[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
          if (!connection.flush_to_host()) close_connection(key, true, "host socket write failed");
        }
      }
    }
    if (count < 32) break;
  }
  if (quiesced_) return {};  // the host side only: resume() comes back for the queues
  try {
    if (transport_reset_pending_ && memory_ != nullptr && queues_.size() == 3) send_transport_reset();
    pump();
  } catch (const VirtqueueError& error) {
    return error.what();  // logged by the transport, which asks the driver for a reset
  }
  return {};
}

void VsockDevice::accept_host_connections() {
  for (;;) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a transient error: the next connection brings a new edge
    UniqueFd owned(fd);
    if (handshakes_.size() >= kMaxHandshakes || connections_.size() >= kMaxConnections || !watch(fd)) continue;
    handshakes_[fd] = Handshake{std::move(owned)};
    read_handshake(fd);
  }
}

void VsockDevice::read_handshake(int fd) {
  char buffer[kHandshakeMaxLine];
  ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  const char* newline = n > 0 ? static_cast<const char*>(std::memchr(buffer, '\n', static_cast<size_t>(n))) : nullptr;
  if (n > 0 && newline == nullptr && static_cast<size_t>(n) < sizeof(buffer)) return;  // line not complete yet
  std::optional<uint32_t> port;
  if (newline != nullptr) {
    size_t length = static_cast<size_t>(newline - buffer) + 1;
    [[maybe_unused]] ssize_t consumed = ::recv(fd, buffer, length, MSG_DONTWAIT);
    port = parse_connect(std::string(buffer, length - 1));
  }
  UniqueFd host = std::move(handshakes_.at(fd).fd);
  handshakes_.erase(fd);
  // A bad line, a closed socket, a guest not ready or too many connections: close it.
  if (!port || memory_ == nullptr || broken() || connections_.size() >= kMaxConnections) return;
  uint32_t local_port = allocate_local_port();
  Key key{local_port, *port};
  auto connection =
      std::make_unique<VsockConnection>(std::move(host), local_port, *port, VsockConnection::State::kConnecting);
  queue_packet(connection->make_header(config_.guest_cid, kVsockOpRequest));
  connection_by_fd_[fd] = key;
  connections_[key] = std::move(connection);
  arm_connect_timer();
}

void VsockDevice::arm_connect_timer() {
  itimerspec when{};
  when.it_value.tv_sec = config_.connect_timeout.count() / 1000;
  when.it_value.tv_nsec = config_.connect_timeout.count() % 1000 * 1000000;
  if (when.it_value.tv_sec == 0 && when.it_value.tv_nsec == 0) when.it_value.tv_nsec = 1;  // 0 would disarm
  timerfd_settime(connect_timer_.get(), 0, &when, nullptr);
}

void VsockDevice::expire_connects() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<Key> overdue;
  bool waiting = false;
  for (const auto& [key, connection] : connections_) {
    if (connection->state() != VsockConnection::State::kConnecting) continue;
    if (now - connection->created() >= config_.connect_timeout)
      overdue.push_back(key);
    else
      waiting = true;
  }
  // The guest never answered: the host client sees its socket closed, the guest a reset.
  for (const auto& key : overdue) close_connection(key, true, "the guest did not answer the connection request");
  if (waiting) arm_connect_timer();
}

uint32_t VsockDevice::allocate_local_port() {
  for (;;) {
    uint32_t port = next_local_port_++;
    if (next_local_port_ == 0) next_local_port_ = kFirstLocalPort;
    bool used = std::any_of(connections_.begin(), connections_.end(),
                            [port](const auto& entry) { return entry.first.first == port; });
    if (!used) return port;
  }
}

void VsockDevice::queue_packet(const VsockHeader& header) { control_.push_back(header); }

void VsockDevice::reply_rst(const VsockHeader& to) {
  if (to.op == kVsockOpRst) return;  // never answer a reset with a reset
  VsockHeader rst;
  rst.src_cid = kVsockHostCid;
  rst.dst_cid = config_.guest_cid;
  rst.src_port = to.dst_port;
  rst.dst_port = to.src_port;
  rst.type = kVsockTypeStream;
  rst.op = kVsockOpRst;
  queue_packet(rst);
}

void VsockDevice::close_connection(const Key& key, bool send_rst, const char* why) {
  auto it = connections_.find(key);
  if (it == connections_.end()) return;
  if (why != nullptr)
    close_log_.line("vsock: closing connection host port " + std::to_string(key.first) + " <-> guest port " +
             std::to_string(key.second) + ": " + why);
  if (send_rst) queue_packet(it->second->make_header(config_.guest_cid, kVsockOpRst));
  connection_by_fd_.erase(it->second->host_fd());
  connections_.erase(it);  // closing the fd also removes it from the epoll set
}

void VsockDevice::handle_guest_packet(const VsockTxPacket& packet) {
  const VsockHeader& header = packet.header;
  if (header.src_cid != config_.guest_cid) return;  // not from this guest: drop
  if (header.dst_cid != kVsockHostCid || header.type != kVsockTypeStream) return reply_rst(header);
  Key key{header.dst_port, header.src_port};
  auto it = connections_.find(key);
  VsockConnection* connection = it == connections_.end() ? nullptr : it->second.get();
  if (connection) connection->update_peer_credit(header);

  switch (header.op) {
    case kVsockOpRequest: {
      if (connection || connections_.size() >= kMaxConnections) return reply_rst(header);
      std::string path = config_.socket_path + "_" + std::to_string(header.dst_port);
      UniqueFd host(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      sockaddr_un address{};
      try {
        address = unix_socket_address(path, "vsock socket");
      } catch (const Error&) {
        return reply_rst(header);
      }
      if (!host.valid() || ::connect(host.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
        return reply_rst(header);  // nobody listens there (or its backlog is full)
      int fd = host.get();
      auto created =
          std::make_unique<VsockConnection>(std::move(host), header.dst_port, header.src_port,
                                            VsockConnection::State::kEstablished);
      created->update_peer_credit(header);
      queue_packet(created->make_header(config_.guest_cid, kVsockOpResponse));
      if (!watch(fd)) return reply_rst(header);
      connection_by_fd_[fd] = key;
      connections_[key] = std::move(created);
      return;
    }
    case kVsockOpResponse: {
      if (!connection || connection->state() != VsockConnection::State::kConnecting) return reply_rst(header);
      connection->set_state(VsockConnection::State::kEstablished);
      // Nothing was written to this fresh socket yet: the line goes out whole or it failed.
      if (!connection->write_handshake("OK " + std::to_string(connection->local_port()) + "\n"))
        return close_connection(key, true, "cannot answer the host's CONNECT");
      return;
    }
    case kVsockOpRw: {
      if (!connection || connection->state() != VsockConnection::State::kEstablished ||
          connection->guest_shut_send)
        return connection ? close_connection(key, true, "data from the guest after it shut down sending")
                          : reply_rst(header);
      // Past its credit, or the host socket failed: the connection is over.
      if (!connection->receive_from_guest(packet.payload))
        return close_connection(key, true, "the guest sent past its credit, or the host socket failed");
      return;
    }
    case kVsockOpCreditUpdate:
      if (!connection) return reply_rst(header);
      connection->credit_requested = false;
      return;
    case kVsockOpCreditRequest:
      if (!connection) return reply_rst(header);
      queue_packet(connection->make_header(config_.guest_cid, kVsockOpCreditUpdate));
      return;
    case kVsockOpShutdown: {
      if (!connection) return reply_rst(header);
      if (header.flags & kVsockShutdownSend) connection->guest_shut_send = true;
      if (header.flags & kVsockShutdownRcv) connection->guest_shut_rcv = true;
      if (connection->guest_shut_send && connection->guest_shut_rcv) {
        connection->set_state(VsockConnection::State::kClosing);
        if (connection->pending_to_host() == 0) close_connection(key, true);
      } else if (connection->guest_shut_send && connection->pending_to_host() == 0) {
        ::shutdown(connection->host_fd(), SHUT_WR);
        connection->host_shut_write = true;
      }
      return;
    }
    case kVsockOpRst:
      if (connection) close_connection(key, false);
      return;
    default:
      return connection ? close_connection(key, true, "unknown operation from the guest") : reply_rst(header);
  }
}

void VsockDevice::process_tx() {
  Virtqueue& tx = *queues_[kTxQueue];
  uint32_t rejected = 0;
  while (control_.size() < kMaxControlPackets) {
    auto chain = tx.next_request(&rejected);
    if (!chain) break;
    std::string problem;
    if (auto packet = parse_vsock_tx(*memory_, *chain, &problem)) {
      handle_guest_packet(*packet);
    } else if (auto header = read_vsock_header(*memory_, *chain); header && header->src_cid == config_.guest_cid) {
      // A readable header with a bad length: that connection is over.
      Key key{header->dst_port, header->src_port};
      if (connections_.count(key))
        close_connection(key, true, problem.c_str());
      else
        reply_rst(*header);
    }
    tx.push_used(chain->head, 0);
    tx_used_ = true;
  }
  if (rejected > 0) tx_used_ = true;
}

std::optional<DescriptorChain> VsockDevice::take_rx() {
  if (spare_rx_) {
    auto chain = std::move(spare_rx_);
    spare_rx_.reset();
    return chain;
  }
  uint32_t rejected = 0;
  auto chain = queues_[kRxQueue]->next_request(&rejected);
  if (rejected > 0) rx_used_ = true;
  return chain;
}

// Sends one data packet (or notices end of file) for `connection`; false if it could not
// (no receive buffer, nothing to read now).
bool VsockDevice::send_data(VsockConnection& connection) {
  auto chain = take_rx();
  if (!chain) return false;
  uint64_t room = chain->writable_bytes();
  if (room <= sizeof(VsockHeader)) {
    queues_[kRxQueue]->push_used(chain->head, 0);  // too small to carry anything
    rx_used_ = true;
    return true;
  }
  uint32_t limit = static_cast<uint32_t>(
      std::min<uint64_t>({room - sizeof(VsockHeader), connection.peer_credit(), kVsockMaxPayload}));
  auto parts = writable_iovecs(*memory_, *chain, sizeof(VsockHeader), limit);
  ssize_t n;
  do {
    n = ::readv(connection.host_fd(), parts.data(), static_cast<int>(parts.size()));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    VsockHeader header = connection.make_header(config_.guest_cid, kVsockOpRw, static_cast<uint32_t>(n));
    write_to_chain(*memory_, *chain, 0, &header, sizeof(header));
    connection.sent_to_guest(static_cast<uint32_t>(n));
    queues_[kRxQueue]->push_used(chain->head, static_cast<uint32_t>(sizeof(header) + n));
    rx_used_ = true;
    return true;
  }
  spare_rx_ = std::move(chain);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    connection.host_readable = false;
    return false;
  }
  // End of file (or a read error): the host sends no more.
  connection.host_eof = true;
  queue_packet(connection.make_header(config_.guest_cid, kVsockOpShutdown, 0, kVsockShutdownSend));
  return true;
}

bool VsockDevice::broken() const {
  return std::any_of(queues_.begin(), queues_.end(), [](const auto& queue) { return queue && queue->broken(); });
}

void VsockDevice::pump() {
  if (memory_ == nullptr || queues_.size() != 3 || !queues_[kRxQueue] || !queues_[kTxQueue] || broken()) return;
  try {
    bool progress = true;
    for (int round = 0; round < kMaxRoundsPerPump && progress; ++round) {
      progress = false;
      size_t control_before = control_.size();
      process_tx();
      progress |= control_.size() != control_before;
      // Connections that flushed to the host since the guest last heard, or that are done.
      std::vector<Key> finished;
      for (auto& [key, connection] : connections_) {
        if (connection->state() == VsockConnection::State::kClosing && connection->pending_to_host() == 0)
          finished.push_back(key);
        else if (connection->guest_shut_send && connection->pending_to_host() == 0 && !connection->host_shut_write) {
          ::shutdown(connection->host_fd(), SHUT_WR);
          connection->host_shut_write = true;
        }
        else if (connection->credit_update_due())
          queue_packet(connection->make_header(config_.guest_cid, kVsockOpCreditUpdate));
      }
      for (const auto& key : finished) close_connection(key, true);
      // Replies first, then data, one packet per connection per pass.
      while (!control_.empty()) {
        auto chain = take_rx();
        if (!chain) break;
        if (!write_to_chain(*memory_, *chain, 0, &control_.front(), sizeof(VsockHeader))) {
          queues_[kRxQueue]->push_used(chain->head, 0);
        } else {
          queues_[kRxQueue]->push_used(chain->head, sizeof(VsockHeader));
          control_.pop_front();
        }
        rx_used_ = progress = true;
      }
      if (control_.empty()) {
        for (auto& [key, connection] : connections_) {
          if (connection->state() != VsockConnection::State::kEstablished || !connection->host_readable ||
              connection->host_eof || connection->guest_shut_rcv)
            continue;
          if (connection->peer_credit() > 0) connection->credit_requested = false;
          if (connection->peer_credit() == 0) {
            if (!connection->credit_requested) {
              connection->credit_requested = true;
              queue_packet(connection->make_header(config_.guest_cid, kVsockOpCreditRequest));
              progress = true;
            }
            continue;
          }
          progress |= send_data(*connection);
        }
      }
    }
    // Work left after the last round (a busy connection): come back through the event loop
    // rather than hold it.
    if (progress) kick();
  } catch (const VirtqueueError&) {
    if (queue_interrupt_) queue_interrupt_(kRxQueue), queue_interrupt_(kTxQueue);
    throw;
  }
  if (rx_used_ && queue_interrupt_) queue_interrupt_(kRxQueue);
  if (tx_used_ && queue_interrupt_) queue_interrupt_(kTxQueue);
  rx_used_ = tx_used_ = false;
}

}  // namespace kdom::devices::virtio
