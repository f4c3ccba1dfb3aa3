// virtio-vsock packet parsing and chain I/O.
#include "devices/virtio/vsock_packet.h"

#include <algorithm>
#include <cstring>

namespace kdom::devices::virtio {

namespace {
// The chain's buffers of one direction from byte `offset` on, at most `limit` bytes.
std::vector<iovec> region_iovecs(const GuestMemory& memory, const DescriptorChain& chain, bool writable,
                                 uint64_t offset, uint64_t limit) {
  std::vector<iovec> out;
  for (const auto& buffer : chain.buffers) {
    if (buffer.device_writable != writable || limit == 0) continue;
    if (offset >= buffer.len) {
      offset -= buffer.len;
      continue;
    }
    uint64_t length = std::min<uint64_t>(buffer.len - offset, limit);
    auto bytes = memory.slice(buffer.addr + offset, length);
    out.push_back({bytes.data(), bytes.size()});
    limit -= length;
    offset = 0;
  }
  return out;
}

uint64_t total(const std::vector<iovec>& iovecs) {
  uint64_t sum = 0;
  for (const auto& v : iovecs) sum += v.iov_len;
  return sum;
}
}  // namespace

std::optional<VsockHeader> read_vsock_header(const GuestMemory& memory, const DescriptorChain& chain) {
  auto parts = region_iovecs(memory, chain, false, 0, sizeof(VsockHeader));
  if (total(parts) < sizeof(VsockHeader)) return std::nullopt;
  VsockHeader header;
  auto* out = reinterpret_cast<uint8_t*>(&header);
  for (const auto& part : parts) {
    std::memcpy(out, part.iov_base, part.iov_len);
    out += part.iov_len;
  }
  return header;
}

std::optional<VsockTxPacket> parse_vsock_tx(const GuestMemory& memory, const DescriptorChain& chain,
                                            std::string* problem) {
  auto header = read_vsock_header(memory, chain);
  if (!header) {
    *problem = "packet shorter than its header";
    return std::nullopt;
  }
  VsockTxPacket packet;
  packet.header = *header;
  const uint32_t len = packet.header.len;
  if (len > kVsockMaxPayload) {
    *problem = "payload length " + std::to_string(len) + " above the limit";
    return std::nullopt;
  }
  packet.payload = region_iovecs(memory, chain, false, sizeof(VsockHeader), len);
  if (total(packet.payload) != len) {
    *problem = "payload length " + std::to_string(len) + " larger than the buffers";
    return std::nullopt;
  }
  return packet;
}

std::vector<iovec> writable_iovecs(const GuestMemory& memory, const DescriptorChain& chain, uint64_t offset,
                                   uint64_t limit) {
  return region_iovecs(memory, chain, true, offset, limit);
}

bool write_to_chain(const GuestMemory& memory, const DescriptorChain& chain, uint64_t offset, const void* data,
                    uint64_t length) {
  auto parts = region_iovecs(memory, chain, true, offset, length);
  if (total(parts) < length) return false;
  auto* in = static_cast<const uint8_t*>(data);
  for (const auto& part : parts) {
    std::memcpy(part.iov_base, in, part.iov_len);
    in += part.iov_len;
  }
  return true;
}

}  // namespace kdom::devices::virtio
