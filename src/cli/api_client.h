// ApiClient: the kdom CLI's side of kdomd's HTTP API (docs/api-contract): HTTP/1.1 over the
// daemon's Unix stream socket, with Boost.Beast (header-only, so the static kdom binary needs
// no libcurl). One connection per request, closed after the reply. Besides plain requests it
// streams a response body as it arrives (the console log with ?follow=1) and upgrades a
// connection to a raw byte stream (console attach).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"

namespace kdom::cli {

constexpr const char* kDefaultKdomdSocket = "/run/kdom/kdomd.sock";

// The socket path from the environment (KDOM_SOCKET), or kDefaultKdomdSocket.
std::string kdomd_socket_path_from_environment();

struct ApiResponse {
  int status = 0;
  std::string text;     // the body as it came
  nlohmann::json body;  // the body parsed, when it is JSON; null otherwise
  bool ok() const { return status >= 200 && status < 300; }
};

// A connection after "101 Switching Protocols": a byte stream both ways.
struct UpgradedConnection {
  UniqueFd fd;
  std::string early_bytes;  // what the server sent right after the 101, read with its headers
};

class ApiClient {
 public:
  using Timeout = std::chrono::milliseconds;
  static constexpr Timeout kDefaultTimeout = std::chrono::seconds(60);

  explicit ApiClient(std::string socket_path, Timeout timeout = kDefaultTimeout);

  const std::string& socket_path() const { return socket_path_; }

  // Sends one request; any status comes back. `method` is an HTTP method ("GET", "POST"...).
  // `timeout` (default: the client's) bounds the whole exchange. Throws Error when kdomd
  // cannot be reached, does not answer in time, or answers something that is not HTTP.
  ApiResponse request(const std::string& method, const std::string& target,
                      const std::optional<nlohmann::json>& body = std::nullopt,
                      std::optional<Timeout> timeout = std::nullopt) const;

  // As request(), but a status other than 2xx throws Error with the server's "error" line.
  // Returns the JSON body.
  nlohmann::json call(const std::string& method, const std::string& target,
                      const std::optional<nlohmann::json>& body = std::nullopt,
                      std::optional<Timeout> timeout = std::nullopt) const;

  // GET whose body is handed to `on_data` piece by piece as it arrives, until the server ends
  // it or `on_data` returns false. Only the headers are under the timeout: a followed log may be
  // quiet for hours.
  void stream_get(const std::string& target, const std::function<bool(std::string_view)>& on_data) const;

  // GET `target` asking to switch to `protocol` (Connection: Upgrade); throws Error unless the
  // answer is 101.
  UpgradedConnection upgrade(const std::string& target, const std::string& protocol) const;

 private:
  UniqueFd connect_to_daemon() const;

  std::string socket_path_;
  Timeout timeout_;
};

// The one line to show for a failed reply: the server's {"error": ...}, or its status.
std::string api_error_message(const ApiResponse& response);

// `text` made safe as one path segment of a request target (percent-encoding what is not
// unreserved in RFC 3986), for domain names in URLs.
std::string url_path_segment(const std::string& text);

}  // namespace kdom::cli
