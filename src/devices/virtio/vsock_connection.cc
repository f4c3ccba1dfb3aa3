// virtio-vsock connection state and credit accounting.
#include "devices/virtio/vsock_connection.h"

#include <sys/socket.h>

#include <cerrno>

namespace kdom::devices::virtio {

namespace {
// Sends as much of `parts` as the socket takes now; -1 on an error other than "would block".
ssize_t send_some(int fd, std::span<const iovec> parts) {
  if (parts.empty()) return 0;
  msghdr message{};
  message.msg_iov = const_cast<iovec*>(parts.data());
  message.msg_iovlen = parts.size();
  for (;;) {
    ssize_t n = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}
}  // namespace

uint32_t VsockConnection::peer_credit() const {
  uint32_t in_flight = tx_cnt_ - peer_fwd_cnt_;  // wraps as the spec's counters do
  return in_flight > peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
}

bool VsockConnection::receive_from_guest(std::span<const iovec> payload) {
  uint64_t length = 0;
  for (const auto& part : payload) length += part.iov_len;
  if (to_host_.size() + length > kBufAlloc) return false;
  size_t sent = 0;
  if (to_host_.empty()) {
    ssize_t n = send_some(host_.get(), payload);
    if (n < 0) return false;
    sent = static_cast<size_t>(n);
    fwd_cnt_ += static_cast<uint32_t>(n);
  }
  // Keep what the socket did not take.
  size_t skip = sent;
  for (const auto& part : payload) {
    if (skip >= part.iov_len) {
      skip -= part.iov_len;
      continue;
    }
    auto* bytes = static_cast<const uint8_t*>(part.iov_base);
    to_host_.insert(to_host_.end(), bytes + skip, bytes + part.iov_len);
    skip = 0;
  }
  return true;
}

bool VsockConnection::write_handshake(const std::string& line) {
  iovec part{const_cast<char*>(line.data()), line.size()};
  return send_some(host_.get(), {&part, 1}) == static_cast<ssize_t>(line.size());
}

bool VsockConnection::flush_to_host() {
  if (to_host_.empty()) return true;
  iovec part{to_host_.data(), to_host_.size()};
  ssize_t n = send_some(host_.get(), {&part, 1});
  if (n < 0) return false;
  to_host_.erase(to_host_.begin(), to_host_.begin() + n);
  fwd_cnt_ += static_cast<uint32_t>(n);
  return true;
}

VsockHeader VsockConnection::make_header(uint64_t guest_cid, uint16_t op, uint32_t len, uint32_t flags) {
  VsockHeader header;
  header.src_cid = kVsockHostCid;
  header.dst_cid = guest_cid;
  header.src_port = local_port_;
  header.dst_port = peer_port_;
  header.len = len;
  header.type = kVsockTypeStream;
  header.op = op;
  header.flags = flags;
  header.buf_alloc = kBufAlloc;
  header.fwd_cnt = fwd_cnt_;
  reported_fwd_cnt_ = fwd_cnt_;
  return header;
}

}  // namespace kdom::devices::virtio
