// StoreGuestServer: the store as a domain's own guest reaches it, as a Xen guest reaches
// xenstore. The VMM joins a guest's vsock connections to the host's port kVsockPort to the
// Unix socket <run dir>/vsock.sock_<port> (kdom's hybrid vsock), where this listens; every
// request on it is made as that domain, under its permissions and quotas, so a guest reads and
// writes its own keys and never another domain's. The line protocol is in docs/interfaces.md;
// the guest's tool is guest/kdom-store.c.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "toolstack/store.h"

namespace kdom::toolstack {

class StoreGuestServer {
 public:
  static constexpr uint32_t kVsockPort = 7001;
  static constexpr size_t kMaxConnectionsPerDomain = 4;
  static constexpr size_t kMaxLineBytes = 8192;

  explicit StoreGuestServer(Store& store);
  ~StoreGuestServer();
  StoreGuestServer(const StoreGuestServer&) = delete;
  StoreGuestServer& operator=(const StoreGuestServer&) = delete;

  // Serves `domain` on the Unix socket `socket_path` (a file left there is replaced).
  void serve(uint32_t domain, const std::string& socket_path);
  // Stops serving `domain`: its listener and connections close.
  void stop(uint32_t domain);

  // One request line as `domain` (no newline); the reply line (no newline). For tests, and
  // the connections' own use.
  std::string handle(uint32_t domain, const std::string& line);

 private:
  struct Listener;
  void accept_loop(Listener& listener);
  // One guest connection's requests, in its own thread, until it goes or the domain is stopped.
  void serve_connection(Listener& listener, int fd);
  // A WATCH request: the connection carries that watch's events from then on.
  void serve_watch(Listener& listener, int fd, const std::string& path);

  Store& store_;
  std::mutex mutex_;
  std::map<uint32_t, std::unique_ptr<Listener>> listeners_;
};

// The protocol's escaping of a value within one line: "\\" for a backslash, "\n" for a line
// break.
std::string store_line_escape(const std::string& value);
std::string store_line_unescape(const std::string& text);

}  // namespace kdom::toolstack
