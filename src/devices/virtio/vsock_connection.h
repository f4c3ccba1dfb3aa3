// One virtio-vsock stream connection between a guest port and a host Unix socket: its state
// (virtio 1.x 5.10.6.4-5.10.6.6) and both directions of credit-based flow control. Toward the
// host, the guest may have at most kBufAlloc bytes in flight (sent but not yet written to the
// host socket); a guest that sends more breaks the protocol and loses the connection. Toward
// the guest, kdom sends no more than the guest's advertised buf_alloc minus what it has not
// yet consumed (peer_credit).
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "devices/virtio/vsock_packet.h"

namespace kdom::devices::virtio {

class VsockConnection {
 public:
  enum class State {
    kConnecting,   // host-initiated: REQUEST sent to the guest, waiting for RESPONSE
    kEstablished,  // data flows
    kClosing,      // the guest shut both directions: flush to the host, then RST
  };
  // Receive buffer kdom advertises to the guest (bytes in flight toward the host).
  static constexpr uint32_t kBufAlloc = 256 * 1024;
  // kdom tells the guest of freed space once this much has been forwarded unreported.
  static constexpr uint32_t kCreditUpdateThreshold = kBufAlloc / 4;

  VsockConnection(UniqueFd host, uint32_t local_port, uint32_t peer_port, State state)
      : host_(std::move(host)),
        local_port_(local_port),
        peer_port_(peer_port),
        state_(state),
        created_(std::chrono::steady_clock::now()) {}

  int host_fd() const { return host_.get(); }
  uint32_t local_port() const { return local_port_; }
  uint32_t peer_port() const { return peer_port_; }
  State state() const { return state_; }
  std::chrono::steady_clock::time_point created() const { return created_; }
  void set_state(State state) { state_ = state; }

  // Every packet from the guest carries its receive buffer and how much it consumed.
  void update_peer_credit(const VsockHeader& header) {
    peer_buf_alloc_ = header.buf_alloc;
    peer_fwd_cnt_ = header.fwd_cnt;
  }
  // Bytes kdom may still send to the guest (0 if the guest's figures are inconsistent).
  uint32_t peer_credit() const;
  // Counts `bytes` sent to the guest.
  void sent_to_guest(uint32_t bytes) { tx_cnt_ += bytes; }

  // Payload from the guest: written to the host socket, the rest kept (bounded by kBufAlloc).
  // Returns false when the guest exceeded its credit or the host socket failed.
  bool receive_from_guest(std::span<const iovec> payload);
  // Writes kdom's own line ("OK <port>\n") to a fresh host socket; it is not guest data, so
  // no credit counts it. False unless all of it was written.
  bool write_handshake(const std::string& line);
  // Writes what is kept for the host; false on a host socket error.
  bool flush_to_host();
  size_t pending_to_host() const { return to_host_.size(); }

  // The header of a packet to the guest on this connection (it carries our credit, and is
  // counted as reported).
  VsockHeader make_header(uint64_t guest_cid, uint16_t op, uint32_t len = 0, uint32_t flags = 0);
  // Whether enough has been forwarded since the guest last heard our fwd_cnt.
  bool credit_update_due() const { return fwd_cnt_ - reported_fwd_cnt_ >= kCreditUpdateThreshold; }
  uint32_t fwd_cnt() const { return fwd_cnt_; }

  // Host-side reading: the host socket may have data; it reached end of file.
  bool host_readable = true;
  bool host_eof = false;
  // The guest said it sends no more / receives no more (SHUTDOWN flags).
  bool guest_shut_send = false;
  bool guest_shut_rcv = false;
  // kdom shut the host socket's writing side (after the guest's SHUTDOWN SEND, all flushed).
  bool host_shut_write = false;
  // A CREDIT_REQUEST was sent while the guest's credit was exhausted.
  bool credit_requested = false;

 private:
  UniqueFd host_;
  uint32_t local_port_;
  uint32_t peer_port_;
  State state_;
  std::chrono::steady_clock::time_point created_;
  uint32_t peer_buf_alloc_ = 0;
  uint32_t peer_fwd_cnt_ = 0;
  uint32_t tx_cnt_ = 0;
  uint32_t fwd_cnt_ = 0;
  uint32_t reported_fwd_cnt_ = 0;
  std::vector<uint8_t> to_host_;
};

}  // namespace kdom::devices::virtio
