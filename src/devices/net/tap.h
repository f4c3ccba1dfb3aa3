// Tap: a Linux TAP interface as a virtio-net back end. Frames carry a virtio-net header in
// front (IFF_VNET_HDR, 12 bytes as virtio 1.x defines it), so checksum and segmentation
// offloads pass between the guest and the host kernel untouched. The fd is nonblocking: the
// device reads it from the VMM's event loop when epoll says it is readable.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/unique_fd.h"
#include "devices/net/backend.h"

namespace kdom::devices::net {

class Tap : public NetBackend {
 public:
  // Bytes of virtio-net header in front of every frame (struct virtio_net_hdr_v1).
  static constexpr int kVnetHeaderBytes = 12;

  // Attaches to (or creates) the TAP interface `name` through /dev/net/tun. Throws Error
  // naming the interface and the problem: no permission (CAP_NET_ADMIN), in use by another
  // process, not a TAP, no /dev/net/tun.
  static std::unique_ptr<Tap> open_by_name(const std::string& name);
  // Takes ownership of `fd`, an already open TAP (as a management tool passes it). Throws
  // Error if it is not open, not a TAP, or was opened without IFF_VNET_HDR.
  static std::unique_ptr<Tap> adopt(int fd);

  const std::string& name() const { return name_; }
  std::string describe() const override { return "TAP '" + name_ + "'"; }
  int fd() const override { return fd_.get(); }
  // TUNSETOFFLOAD: throws SystemError naming the interface if the kernel refuses.
  void set_offload(unsigned flags) override;
  ssize_t read_frame(std::span<uint8_t> buffer) override;
  ssize_t write_frame(std::span<const iovec> parts) override;

 private:
  Tap(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  // Sets the header size and nonblocking mode, and turns offloads off until a driver asks.
  void prepare();

  UniqueFd fd_;
  std::string name_;
};

}  // namespace kdom::devices::net
