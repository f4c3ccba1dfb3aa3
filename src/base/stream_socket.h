// A connected stream socket (Unix or TCP) that a server writes to: all of a buffer sent, and
// whether the peer has hung up, for the daemon's HTTP connections, streams and the store's
// guest connections; how much of what was sent is still on its way, and how much a reader
// lets its kernel hold, for a live migration's stream.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kdom {

// Sends all of `data` (MSG_NOSIGNAL, retrying on EINTR); false when the peer has gone or the
// socket's send timeout passed.
bool send_all(int fd, std::string_view data);

// True when the peer has closed or reset the connection; never waits.
bool peer_hung_up(int fd);

// The bytes written to `fd` that have not reached the peer yet (SIOCOUTQ: TCP's unsent and
// unacknowledged bytes, a Unix socket's unread ones); nullopt where `fd` does not say (a pipe,
// a file).
std::optional<uint64_t> bytes_on_their_way(int fd);

// Caps what the kernel holds for this reader (SO_RCVBUF; the kernel doubles it for its own
// bookkeeping); false where `fd` is not a socket.
bool cap_receive_buffer(int fd, int bytes);

}  // namespace kdom
