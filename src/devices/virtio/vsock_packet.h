// virtio-vsock packets (virtio 1.x section 5.10.6): the 44-byte header every packet starts
// with, and moving packets in and out of descriptor chains. A packet the guest sends is
// checked here before anything else looks at it: its header must fit in the chain's readable
// bytes and its payload length must fit both in what follows and under kVsockMaxPayload.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace kdom::devices::virtio {

#pragma pack(push, 1)
struct VsockHeader {
  uint64_t src_cid = 0;
  uint64_t dst_cid = 0;
  uint32_t src_port = 0;
  uint32_t dst_port = 0;
  uint32_t len = 0;
  uint16_t type = 0;
  uint16_t op = 0;
  uint32_t flags = 0;
  uint32_t buf_alloc = 0;
  uint32_t fwd_cnt = 0;
};
#pragma pack(pop)
static_assert(sizeof(VsockHeader) == 44);

inline constexpr uint64_t kVsockHostCid = 2;
inline constexpr uint16_t kVsockTypeStream = 1;

enum VsockOp : uint16_t {
  kVsockOpRequest = 1,
  kVsockOpResponse = 2,
  kVsockOpRst = 3,
  kVsockOpShutdown = 4,
  kVsockOpRw = 5,
  kVsockOpCreditUpdate = 6,
  kVsockOpCreditRequest = 7,
};

// SHUTDOWN flags: the sender will receive no more / send no more.
inline constexpr uint32_t kVsockShutdownRcv = 1;
inline constexpr uint32_t kVsockShutdownSend = 2;

// The largest payload accepted in one packet (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
inline constexpr uint32_t kVsockMaxPayload = 64 * 1024;
// The event queue's one event (5.10.6.6, struct virtio_vsock_event's id): the device's
// transport was reset (a restore or migration): the driver drops its connections and reads
// the guest CID again.
inline constexpr uint32_t kVsockEventTransportReset = 0;

// A packet taken from the transmit queue: its header, and its payload as host iovecs into
// guest memory (exactly header.len bytes in all).
struct VsockTxPacket {
  VsockHeader header;
  std::vector<iovec> payload;
};

// The header in `chain`'s first readable bytes; nullopt if they are too few.
std::optional<VsockHeader> read_vsock_header(const GuestMemory& memory, const DescriptorChain& chain);

// Parses the packet in `chain`'s readable buffers. Returns nullopt and sets `*problem` when
// the chain cannot hold a header or header.len exceeds the bytes that follow or the limit.
std::optional<VsockTxPacket> parse_vsock_tx(const GuestMemory& memory, const DescriptorChain& chain,
                                            std::string* problem);

// The chain's device-writable bytes from `offset` on, at most `limit` of them, as iovecs.
std::vector<iovec> writable_iovecs(const GuestMemory& memory, const DescriptorChain& chain, uint64_t offset,
                                   uint64_t limit);

// Writes `length` bytes of `data` at `offset` into the chain's writable buffers; false if
// they do not fit.
bool write_to_chain(const GuestMemory& memory, const DescriptorChain& chain, uint64_t offset, const void* data,
                    uint64_t length);

}  // namespace kdom::devices::virtio
