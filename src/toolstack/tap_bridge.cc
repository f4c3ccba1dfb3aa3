// TAP devices on Linux bridges, through the tun driver's and the bridge's ioctls.
#include "toolstack/tap_bridge.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "base/unique_fd.h"

namespace kdom::toolstack {

namespace {

ifreq request_for(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) throw Error("interface name '" + name + "' is empty or too long");
  ifreq request{};
  std::memcpy(request.ifr_name, name.data(), name.size());
  return request;
}

// A TAP with the flags kdom's virtio-net opens it with (devices/net/tap.cc).
UniqueFd open_tap(const std::string& tap) {
  UniqueFd fd(check_syscall(::open("/dev/net/tun", O_RDWR | O_CLOEXEC), "open /dev/net/tun"));
  ifreq request = request_for(tap);
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  check_syscall(::ioctl(fd.get(), TUNSETIFF, &request), "TAP " + tap + ": TUNSETIFF");
  return fd;
}

}  // namespace

void create_bridged_tap(const std::string& tap, const std::string& bridge, const std::array<uint8_t, 6>& guest_mac) {
  UniqueFd control(check_syscall(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket"));
  ifreq bridge_request = request_for(bridge);
  if (::ioctl(control.get(), SIOCGIFINDEX, &bridge_request) != 0)
    throw Error("vif bridge '" + bridge + "' does not exist (create it first: ip link add " + bridge + " type bridge)");
  UniqueFd fd = open_tap(tap);
  check_syscall(::ioctl(fd.get(), TUNSETPERSIST, 1), "TAP " + tap + ": TUNSETPERSIST");
  try {
    ifreq tap_request = request_for(tap);
    check_syscall(::ioctl(control.get(), SIOCGIFINDEX, &tap_request), "TAP " + tap + ": SIOCGIFINDEX");
    ifreq address = request_for(tap);
    address.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    address.ifr_hwaddr.sa_data[0] = static_cast<char>(0xfe);
    for (size_t i = 1; i < guest_mac.size(); ++i) address.ifr_hwaddr.sa_data[i] = static_cast<char>(guest_mac[i]);
    check_syscall(::ioctl(control.get(), SIOCSIFHWADDR, &address), "TAP " + tap + ": SIOCSIFHWADDR");
    ifreq enslave = request_for(bridge);
    enslave.ifr_ifindex = tap_request.ifr_ifindex;
    if (::ioctl(control.get(), SIOCBRADDIF, &enslave) != 0)
      throw SystemError("cannot put TAP " + tap + " on bridge '" + bridge + "' (is it a bridge?)", errno);
    ifreq flags = request_for(tap);
    check_syscall(::ioctl(control.get(), SIOCGIFFLAGS, &flags), "TAP " + tap + ": SIOCGIFFLAGS");
    flags.ifr_flags = static_cast<short>(flags.ifr_flags | IFF_UP);
    check_syscall(::ioctl(control.get(), SIOCSIFFLAGS, &flags), "TAP " + tap + ": SIOCSIFFLAGS");
  } catch (...) {
    ::ioctl(fd.get(), TUNSETPERSIST, 0);
    throw;
  }
}

void remove_tap(const std::string& tap) {
  try {
    UniqueFd fd = open_tap(tap);
    check_syscall(::ioctl(fd.get(), TUNSETPERSIST, 0), "TAP " + tap + ": TUNSETPERSIST 0");
  } catch (const std::exception& error) {
    log_line(std::string("cannot remove ") + error.what());
  }
}

}  // namespace kdom::toolstack
