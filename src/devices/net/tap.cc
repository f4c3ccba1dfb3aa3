// Opening and configuring a TAP interface, and moving frames through it.
#include "devices/net/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "base/error.h"

namespace kdom::devices::net {

std::unique_ptr<Tap> Tap::open_by_name(const std::string& name) {
  const std::string what = "TAP '" + name + "'";
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos ||
      name.find_first_of(" \t\n") != std::string::npos)
    throw Error(what + ": not a valid interface name (1 to " + std::to_string(IFNAMSIZ - 1) + " bytes)");
  const int raw = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (raw < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      throw Error(what + ": /dev/net/tun does not exist (is the tun module loaded?)");
    if (err == EACCES || err == EPERM) throw Error(what + ": no permission to open /dev/net/tun");
    throw SystemError(what + ": cannot open /dev/net/tun", err);
  }
  UniqueFd fd(raw);
  ifreq request{};
  std::memcpy(request.ifr_name, name.data(), name.size());
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &request) < 0) {
    const int err = errno;
    switch (err) {
      case EPERM:
      case EACCES:
        throw Error(what + ": no permission to create or attach it (needs CAP_NET_ADMIN, or a persistent TAP owned by this user)");
      case EBUSY:
        throw Error(what + " is in use by another process");
      case EINVAL:
        throw Error(what + ": an interface of that name exists and is not a TAP device (or has other flags)");
      default:
        throw SystemError(what + ": TUNSETIFF", err);
    }
  }
  std::unique_ptr<Tap> tap(new Tap(std::move(fd), request.ifr_name));
  tap->prepare();
  return tap;
}

std::unique_ptr<Tap> Tap::adopt(int fd) {
  const std::string what = "TAP fd " + std::to_string(fd);
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) throw Error(what + " is not an open file descriptor");
  ifreq request{};
  if (::ioctl(fd, TUNGETIFF, &request) < 0) throw Error(what + " is not a TAP device (TUNGETIFF failed: " + std::strerror(errno) + ")");
  if ((request.ifr_flags & IFF_TAP) == 0) throw Error(what + " is a TUN device, not a TAP device");
  if ((request.ifr_flags & IFF_VNET_HDR) == 0) throw Error(what + " was opened without IFF_VNET_HDR, which kdom needs");
  request.ifr_name[IFNAMSIZ - 1] = '\0';
  std::unique_ptr<Tap> tap(new Tap(UniqueFd(fd), request.ifr_name));
  tap->prepare();
  return tap;
}

void Tap::prepare() {
  const std::string what = "TAP '" + name_ + "'";
  int header_bytes = kVnetHeaderBytes;
  check_syscall(::ioctl(fd_.get(), TUNSETVNETHDRSZ, &header_bytes), what + ": TUNSETVNETHDRSZ");
  // Frames the guest sends stay charged to the TAP until the host stack has consumed them; with
  // the default socket send buffer (~200 KiB) a slow receiver makes writes fail with EAGAIN and
  // frames get dropped (TCP then backs off). No limit, as QEMU does: the guest's queue is the
  // limit.
  int send_buffer = INT_MAX;
  check_syscall(::ioctl(fd_.get(), TUNSETSNDBUF, &send_buffer), what + ": TUNSETSNDBUF");
  const int flags = check_syscall(::fcntl(fd_.get(), F_GETFL), what + ": F_GETFL");
  check_syscall(::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK), what + ": F_SETFL");
  check_syscall(::fcntl(fd_.get(), F_SETFD, FD_CLOEXEC), what + ": F_SETFD");
  set_offload(0);
}

void Tap::set_offload(unsigned flags) {
  check_syscall(::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(flags)),
                "TAP '" + name_ + "': TUNSETOFFLOAD");
}

ssize_t Tap::read_frame(std::span<uint8_t> buffer) {
  for (;;) {
    const ssize_t n = ::read(fd_.get(), buffer.data(), buffer.size());
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

ssize_t Tap::write_frame(std::span<const iovec> parts) {
  for (;;) {
    const ssize_t n = ::writev(fd_.get(), parts.data(), static_cast<int>(parts.size()));
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

}  // namespace kdom::devices::net
