// NetBackend: where a virtio-net device's frames go on the host side (a TAP interface in
// kdom; a socketpair in the unit tests). Every frame starts with the 12-byte virtio-net
// header (struct virtio_net_hdr_v1). The fd is nonblocking and readable when a frame waits.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>

namespace kdom::devices::net {

// Offload flags (the values of linux/if_tun.h's TUN_F_*, as TUNSETOFFLOAD takes them): what the
// reader of the back end (the device, for the guest) accepts from the host kernel.
inline constexpr unsigned kOffloadCsum = 0x01;  // partial checksums
inline constexpr unsigned kOffloadTso4 = 0x02;
inline constexpr unsigned kOffloadTso6 = 0x04;
inline constexpr unsigned kOffloadTsoEcn = 0x08;

class NetBackend {
 public:
  virtual ~NetBackend() = default;
  // For messages: "TAP 'tap0'".
  virtual std::string describe() const = 0;
  // Polled for readability by the VMM's event loop.
  virtual int fd() const = 0;
  // What the guest can take from the host (kOffload* flags); throws Error if refused.
  virtual void set_offload(unsigned flags) = 0;
  // One frame (header included) into `buffer`: its length, or -errno (-EAGAIN: none waiting).
  virtual ssize_t read_frame(std::span<uint8_t> buffer) = 0;
  // One frame (header included) gathered from `parts`: bytes written, or -errno.
  virtual ssize_t write_frame(std::span<const iovec> parts) = 0;
};

}  // namespace kdom::devices::net
