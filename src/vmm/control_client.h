// The client side of a running domain's control socket (`kdom run --control PATH`): one JSON
// request line out (with a file descriptor, for migrate-send), one reply line back.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"

namespace kdom::vmm {

// Sends one request to the control socket at `path` and returns the reply. Throws Error when
// the socket is missing, nothing answers, the reply is not JSON, or the reply says ok:false
// (with the domain's error message). `reply_seconds`: how long to wait for the reply (a save
// of a large domain takes a while).
nlohmann::json control_request(const std::string& path, const nlohmann::json& request, int reply_seconds = 10);

// The same with the file descriptor `fd` passed along (SCM_RIGHTS, on the sendmsg that
// carries the line's first byte): migrate-send's stream. The fd stays the caller's (the domain
// gets its own copy). A migration's reply comes when it ends: `reply_seconds` is its limit.
nlohmann::json control_request_with_fd(const std::string& path, const nlohmann::json& request, int fd,
                                      int reply_seconds);

// Subscribes to the domain's events (`{"op":"events"}`): returns the connection, blocking, the
// reply read and nothing after it, so the next bytes on it are the first event line. Throws
// Error as control_request does.
UniqueFd subscribe_to_events(const std::string& path);

// True while a domain listens on the control socket at `path` (a connection is made and closed
// at once); false once it is gone (kdom removes the socket when the domain has stopped).
bool control_socket_answers(const std::string& path);

}  // namespace kdom::vmm
