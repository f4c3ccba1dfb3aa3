// Unix socket addresses, checked.
#include "base/unix_socket.h"

#include <sys/socket.h>

#include <cstring>

#include "base/error.h"

namespace kdom {

sockaddr_un unix_socket_address(const std::string& path, const std::string& what) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path))
    throw Error(what + " path '" + path + "' is empty or too long (longer than " +
                std::to_string(sizeof(address.sun_path) - 1) + " bytes)");
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

}  // namespace kdom
