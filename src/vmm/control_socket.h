// ControlSocket: the control socket of a running domain (`kdom run --control PATH`): a Unix
// stream socket on which each request is one JSON object on a line and each reply one JSON
// line, handled by ControlRequests. It is served in the device event loop, never in a vCPU
// thread. The socket file is created by kdom (an existing path is refused, never replaced)
// and removed when the domain ends. A connection that asks for `{"op":"events"}` gets
// {"ok":true} and from then on is the EventStream's: one event line after another.
// A request may come with a file descriptor (SCM_RIGHTS, at most one, sent with the line's
// first byte, by a sendmsg that carries no later line): `migrate-send` takes it as its stream,
// and the connection goes with it to the MigrationRunner, which replies when the migration
// ends; any other request's fd is closed.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "base/unique_fd.h"
#include "vmm/control_requests.h"
#include "vmm/event_loop.h"
#include "vmm/event_stream.h"
#include "vmm/migration_runner.h"

namespace kdom::vmm {

// Creates a listening, non-blocking Unix stream socket at `path`; throws Error when the path
// exists (never replaced: it may be another kdom's) or cannot be bound. `what` names the
// socket in errors ("control socket"). The caller unlinks the path when done.
UniqueFd listen_on_unix_socket(const std::string& path, const std::string& what);

class ControlSocket {
 public:
  // At most this many clients at once (others are closed at once), and this many bytes in one
  // request line (a longer one gets an error reply and the connection is closed).
  static constexpr size_t kMaxConnections = 16;
  static constexpr size_t kMaxLineBytes = 64 * 1024;

  // Binds and listens on `path` and serves it in `events`. Throws Error when the path exists
  // or cannot be bound. `events`, `requests`, `stream` (null: no events op) and `migrations`
  // (null: no migrate-send) must outlive this object, and `events` must be stopped before it
  // is destroyed (or never started).
  ControlSocket(const std::string& path, EventLoop& events, ControlRequests& requests,
                EventStream* stream = nullptr, MigrationRunner* migrations = nullptr);
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  const std::string& path() const { return path_; }

 private:
  struct Connection {
    UniqueFd fd;
    std::string pending;  // bytes received after the last complete line
    // An fd the client passed, and where in `pending` its line begins.
    UniqueFd passed;
    size_t passed_at = 0;
  };
  void accept_clients();
  void serve(int fd);
  // One recvmsg into `buffer`: the bytes read (0: the client is done; -1 with errno); a
  // passed fd is kept with the connection (`got_fd`).
  ssize_t receive(Connection& connection, char* buffer, size_t size, bool& got_fd);
  // Hands the connection to the event stream; false (the connection stays a control one)
  // when the stream has all the subscribers it takes.
  bool subscribe(int fd);
  // Hands the connection and `stream` to the migration runner; the error reply's text
  // (the connection stays a control one) when it takes no migration now.
  std::optional<std::string> start_migration(int fd, UniqueFd stream, const nlohmann::json& request);
  void close_connection(int fd);

  std::string path_;
  EventLoop& events_;
  ControlRequests& requests_;
  EventStream* stream_;
  MigrationRunner* migrations_;
  UniqueFd listener_;
  std::map<int, std::unique_ptr<Connection>> connections_;  // touched only in the loop's thread
};

}  // namespace kdom::vmm
