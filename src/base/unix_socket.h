// The address of a Unix stream socket named by a path, checked against sockaddr_un's limit:
// what every Unix-socket client and server of kdom's (the API, the control and console sockets,
// vsock's host side) starts from.
#pragma once

#include <sys/un.h>

#include <string>

namespace kdom {

// The address of the socket at `path`. Throws Error naming `what` ("kdomd socket", ...) when the
// path is empty or too long for sockaddr_un.
sockaddr_un unix_socket_address(const std::string& path, const std::string& what);

}  // namespace kdom
