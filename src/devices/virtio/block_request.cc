// Parsing of virtio-blk request chains: header, data extents and status byte, by byte offset
// across the chain's buffers, so that no framing (one buffer per part or not) is assumed
// (virtio 1.x 2.6.4).
#include "devices/virtio/block_request.h"

#include <cstring>

namespace kdom::devices::virtio {

bool chain_iovecs(const GuestMemory& memory, const DescriptorChain& chain, bool device_writable, uint64_t offset,
                  uint64_t length, std::vector<iovec>& out) {
  out.clear();
  if (length == 0) return true;
  uint64_t skip = offset;
  uint64_t left = length;
  for (const VirtqBuffer& buffer : chain.buffers) {
    if (buffer.device_writable != device_writable) continue;
    if (skip >= buffer.len) {
      skip -= buffer.len;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(buffer.len - skip, left);
    // The Virtqueue checked every buffer; slice checks again and throws on a bug, not on the guest.
    const std::span<uint8_t> host = memory.slice(buffer.addr + skip, take);
    out.push_back(iovec{host.data(), static_cast<size_t>(take)});
    skip = 0;
    left -= take;
    if (left == 0) return true;
  }
  out.clear();
  return false;
}

bool read_chain_bytes(const GuestMemory& memory, const DescriptorChain& chain, uint64_t offset, void* out,
                      uint64_t length) {
  std::vector<iovec> pieces;
  if (!chain_iovecs(memory, chain, false, offset, length, pieces)) return false;
  auto* dest = static_cast<uint8_t*>(out);
  for (const iovec& piece : pieces) {
    std::memcpy(dest, piece.iov_base, piece.iov_len);
    dest += piece.iov_len;
  }
  return true;
}

BlockRequest parse_block_request(const GuestMemory& memory, const DescriptorChain& chain) {
  BlockRequest request;
  const uint64_t readable = chain.readable_bytes();
  const uint64_t writable = chain.writable_bytes();

  // The status byte is the chain's last writable byte, which lies in the last buffer (all
  // writable buffers follow the readable ones); a zero-length last buffer holds none.
  if (chain.buffers.empty() || !chain.buffers.back().device_writable || chain.buffers.back().len == 0) {
    request.malformed = "request has no writable status byte";
    return request;
  }
  const VirtqBuffer& last = chain.buffers.back();
  request.status_gpa = last.addr + last.len - 1;
  request.writable_data_bytes = writable - 1;

  if (readable < sizeof(BlockRequestHeader)) {
    request.malformed = "request header is " + std::to_string(readable) + " bytes, not 16";
    return request;
  }
  read_chain_bytes(memory, chain, 0, &request.header, sizeof(BlockRequestHeader));
  request.readable_data_bytes = readable - sizeof(BlockRequestHeader);
  return request;
}

}  // namespace kdom::devices::virtio
