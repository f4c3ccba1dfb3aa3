// The client side of a running domain's control socket (`kdom run --control PATH`): one JSON
// request line out, one reply line back.
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

// The same with the descriptor `passed_fd` sent along with the request (SCM_RIGHTS): the
// `migrate-send` op's stream.
nlohmann::json control_request_with_fd(const std::string& path, const nlohmann::json& request, int passed_fd,
                                       int reply_seconds);

// Subscribes to the domain's events (`{"op":"events"}`): returns the connection, blocking, the
// reply read and nothing after it, so the next bytes on it are the first event line. Throws
// Error as control_request does.
UniqueFd subscribe_to_events(const std::string& path);

// True while a domain listens on the control socket at `path` (a connection is made and closed
// at once); false once it is gone (kdom removes the socket when the domain has stopped).
bool control_socket_answers(const std::string& path);

}  // namespace kdom::vmm
