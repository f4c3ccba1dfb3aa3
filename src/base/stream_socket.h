// A connected stream socket (Unix or TCP) that a server writes to: all of a buffer sent, and
// whether the peer has hung up, for the daemon's HTTP connections, streams and the store's
// guest connections.
#pragma once

#include <string_view>

namespace kdom {

// Sends all of `data` (MSG_NOSIGNAL, retrying on EINTR); false when the peer has gone or the
// socket's send timeout passed.
bool send_all(int fd, std::string_view data);

// True when the peer has closed or reset the connection; never waits.
bool peer_hung_up(int fd);

}  // namespace kdom
