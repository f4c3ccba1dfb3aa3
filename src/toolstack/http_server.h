// HttpServer: kdomd's HTTP/1.1 listener (Boost.Beast) on a Unix socket and, optionally, on TCP
// where every request must carry the bearer token. Each connection is served by a thread of its
// own, so a slow or stuck client holds up nobody else; a request the handler answers with a
// stream (a followed console log, an upgraded console attach) takes the connection over.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"

namespace kdom::toolstack {

struct HttpRequest {
  std::string method;  // "GET", "POST"...
  std::string path;    // without the query
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

struct HttpReply {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  // When set, the headers are sent (for status 101 the connection is upgraded, otherwise the
  // body is sent chunked) and this runs with the connection's fd: it writes raw bytes (101) or
  // chunks through write_chunk (other statuses) until it returns; the connection is then closed.
  std::function<void(int fd)> stream;

  static HttpReply json(unsigned status, const nlohmann::json& body);
  static HttpReply error(unsigned status, const std::string& message);
};

// Writes one chunk of a chunked response body to `fd`; false when the client has gone.
bool write_chunk(int fd, std::string_view data);

class HttpServer {
 public:
  using Handler = std::function<HttpReply(const HttpRequest&)>;

  static constexpr size_t kMaxBodyBytes = 1024 * 1024;
  static constexpr size_t kMaxHeaderBytes = 16 * 1024;
  static constexpr size_t kMaxConnections = 256;

  explicit HttpServer(Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves `listener` (a listening socket, owned from now on); `token`, when not empty, is
  // required as "Authorization: Bearer TOKEN" on every request (401 otherwise).
  void serve(UniqueFd listener, std::string token);
  // Stops accepting and waits a moment for requests in progress; connections still open then
  // (followed streams) end when their clients go.
  void stop();

 private:
  struct Listener {
    UniqueFd fd;
    std::string token;
    std::thread thread;
  };
  void accept_loop(Listener& listener);
  void serve_connection(int fd, const std::string& token);

  Handler handler_;
  UniqueFd stop_fd_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::mutex mutex_;
  std::condition_variable idle_;
  size_t connections_ = 0;
};

// A listening Unix stream socket at `path` with file mode `mode` (and group `group_id`, when
// not -1). A socket file left by a daemon that is gone is replaced; one that answers is refused
// ("another kdomd is listening on PATH").
UniqueFd listen_unix(const std::string& path, unsigned mode, int group_id);
// A listening TCP socket on "ADDR:PORT" (IPv4 or [IPv6]); throws Error on a bad address.
UniqueFd listen_tcp(const std::string& address_and_port, const std::string& option = "--listen");

}  // namespace kdom::toolstack
