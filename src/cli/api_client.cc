// ApiClient: HTTP/1.1 requests to kdomd over its Unix socket. Beast does the HTTP; the socket
// is a plain fd wrapped in a small synchronous stream whose reads and writes wait with poll()
// against a deadline, so a daemon that stops answering cannot hang the CLI (a blocking Asio
// socket has no timeout for synchronous reads).
#include "cli/api_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "base/error.h"
#include "base/unix_socket.h"

namespace kdom::cli {

namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMaxResponseBytes = 64 * 1024 * 1024;
constexpr size_t kStreamChunkBytes = 16 * 1024;

// A connected socket as Beast's SyncReadStream and SyncWriteStream. Every wait ends at the
// deadline (none: wait for ever) with error::timed_out.
class DeadlineStream {
 public:
  explicit DeadlineStream(int fd) : fd_(fd) {}

  void set_deadline(std::optional<Clock::time_point> deadline) { deadline_ = deadline; }

  template <typename MutableBuffers>
  size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    const net::mutable_buffer buffer = first_non_empty<net::mutable_buffer>(buffers);
    ec = {};
    if (buffer.size() == 0) return 0;
    for (;;) {
      if (!wait_for(POLLIN, ec)) return 0;
      const ssize_t n = ::read(fd_, buffer.data(), buffer.size());
      if (n > 0) return static_cast<size_t>(n);
      if (n == 0) {
        ec = net::error::eof;
        return 0;
      }
      if (errno == EINTR || errno == EAGAIN) continue;
      ec = error_code(errno, boost::system::system_category());
      return 0;
    }
  }

  template <typename ConstBuffers>
  size_t write_some(const ConstBuffers& buffers, error_code& ec) {
    const net::const_buffer buffer = first_non_empty<net::const_buffer>(buffers);
    ec = {};
    if (buffer.size() == 0) return 0;
    for (;;) {
      if (!wait_for(POLLOUT, ec)) return 0;
      const ssize_t n = ::send(fd_, buffer.data(), buffer.size(), MSG_NOSIGNAL);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR || errno == EAGAIN) continue;
      ec = error_code(errno, boost::system::system_category());
      return 0;
    }
  }

  template <typename MutableBuffers>
  size_t read_some(const MutableBuffers& buffers) {
    error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  template <typename ConstBuffers>
  size_t write_some(const ConstBuffers& buffers) {
    error_code ec;
    const size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  template <typename Buffer, typename Buffers>
  static Buffer first_non_empty(const Buffers& buffers) {
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
      Buffer buffer(*it);
      if (buffer.size() > 0) return buffer;
    }
    return Buffer();
  }

  bool wait_for(short events, error_code& ec) {
    for (;;) {
      int timeout_ms = -1;
      if (deadline_) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - Clock::now()).count();
        if (left <= 0) {
          ec = net::error::timed_out;
          return false;
        }
        timeout_ms = static_cast<int>(std::min<long long>(left, 1 << 30));
      }
      pollfd entry{fd_, events, 0};
      const int ready = ::poll(&entry, 1, timeout_ms);
      if (ready > 0) return true;  // readable, writable, or an error the read or write reports
      if (ready < 0 && errno != EINTR) {
        ec = error_code(errno, boost::system::system_category());
        return false;
      }
    }
  }

  int fd_;
  std::optional<Clock::time_point> deadline_;
};

http::verb method_verb(const std::string& method) {
  const http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) throw Error("unknown HTTP method '" + method + "'");
  return verb;
}

std::string seconds_text(ApiClient::Timeout timeout) {
  const auto ms = timeout.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

// The one line for a failed exchange with the daemon.
[[noreturn]] void throw_exchange_error(const std::string& doing, const error_code& ec, ApiClient::Timeout timeout) {
  if (ec == net::error::timed_out) throw Error("kdomd did not answer within " + seconds_text(timeout) + " (" + doing + ")");
  if (ec == net::error::eof || ec == http::error::end_of_stream || ec == http::error::partial_message ||
      ec == net::error::connection_reset || ec == net::error::broken_pipe)
    throw Error("kdomd closed the connection while " + doing);
  throw Error("bad reply from kdomd while " + doing + ": " + ec.message());
}

http::request<http::string_body> make_request(const std::string& method, const std::string& target,
                                              const std::optional<nlohmann::json>& body) {
  http::request<http::string_body> request{method_verb(method), target, 11};
  request.set(http::field::host, "kdomd");
  request.set(http::field::user_agent, "kdom");
  if (body) {
    request.set(http::field::content_type, "application/json");
    request.body() = body->dump();
  }
  request.prepare_payload();
  return request;
}

ApiResponse to_api_response(const http::response<http::string_body>& response) {
  ApiResponse result;
  result.status = static_cast<int>(response.result_int());
  result.text = response.body();
  const auto first = result.text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (result.text[first] == '{' || result.text[first] == '[')) {
    result.body = nlohmann::json::parse(result.text, nullptr, /*allow_exceptions=*/false);
    if (result.body.is_discarded()) result.body = nullptr;
  }
  return result;
}

// Sends `request` on `stream` with `limit` as the deadline; throws Error naming `doing`.
void send_request(DeadlineStream& stream, http::request<http::string_body>& request, const std::string& doing,
                  ApiClient::Timeout limit) {
  stream.set_deadline(Clock::now() + limit);
  error_code ec;
  http::write(stream, request, ec);
  if (ec) throw_exchange_error(doing, ec, limit);
}

// Reads one whole reply (a body of kMaxResponseBytes at most). Bytes that came after it (an
// upgraded stream's first ones) stay in `buffer`.
http::response<http::string_body> read_reply(DeadlineStream& stream, boost::beast::flat_buffer& buffer,
                                             const std::string& doing, ApiClient::Timeout limit) {
  error_code ec;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxResponseBytes);
  http::read(stream, buffer, parser, ec);
  if (ec) throw_exchange_error(doing, ec, limit);
  return parser.release();
}

}  // namespace

std::string kdomd_socket_path_from_environment() {
  const char* from_environment = std::getenv("KDOM_SOCKET");
  return from_environment && *from_environment ? from_environment : kDefaultKdomdSocket;
}

ApiClient::ApiClient(std::string socket_path, Timeout timeout) : socket_path_(std::move(socket_path)), timeout_(timeout) {}

UniqueFd ApiClient::connect_to_daemon() const {
  const sockaddr_un address = unix_socket_address(socket_path_, "kdomd socket");
  UniqueFd fd(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket(AF_UNIX)"));
  int result;
  do {
    result = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  } while (result < 0 && errno == EINTR);
  if (result < 0) {
    const int err = errno;
    throw Error("cannot reach kdomd at " + socket_path_ + ": " + std::strerror(err) + " (is kdomd running?)");
  }
  return fd;
}

ApiResponse ApiClient::request(const std::string& method, const std::string& target,
                               const std::optional<nlohmann::json>& body, std::optional<Timeout> timeout) const {
  const Timeout limit = timeout.value_or(timeout_);
  const std::string doing = method + " " + target;
  auto request = make_request(method, target, body);
  UniqueFd fd = connect_to_daemon();
  DeadlineStream stream(fd.get());
  send_request(stream, request, doing, limit);
  boost::beast::flat_buffer buffer;
  return to_api_response(read_reply(stream, buffer, doing, limit));
}

nlohmann::json ApiClient::call(const std::string& method, const std::string& target,
                               const std::optional<nlohmann::json>& body, std::optional<Timeout> timeout) const {
  ApiResponse response = request(method, target, body, timeout);
  if (!response.ok()) throw Error(api_error_message(response));
  return std::move(response.body);
}

void ApiClient::stream_get(const std::string& target, const std::function<bool(std::string_view)>& on_data) const {
  const std::string doing = "GET " + target;
  auto request = make_request("GET", target, std::nullopt);
  UniqueFd fd = connect_to_daemon();
  DeadlineStream stream(fd.get());
  send_request(stream, request, doing, timeout_);
  error_code ec;
  boost::beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<uint64_t>::max());  // a followed log has no end
  http::read_header(stream, buffer, parser, ec);
  if (ec) throw_exchange_error(doing, ec, timeout_);
  const int status = static_cast<int>(parser.get().result_int());
  const bool ok = status >= 200 && status < 300;
  if (ok) stream.set_deadline(std::nullopt);
  std::string error_text;  // a failed reply's body, for its error line
  char chunk[kStreamChunkBytes];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    // read_some, not read: hand over what came as soon as it came.
    http::read_some(stream, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) throw_exchange_error(doing, ec, timeout_);
    const size_t filled = sizeof(chunk) - parser.get().body().size;
    if (filled == 0) continue;
    if (ok) {
      if (!on_data(std::string_view(chunk, filled))) return;
    } else if (error_text.size() < kMaxResponseBytes) {
      error_text.append(chunk, filled);
    }
  }
  if (!ok) {
    http::response<http::string_body> failed{parser.get().result(), 11};
    failed.body() = std::move(error_text);
    throw Error(api_error_message(to_api_response(failed)));
  }
}

UpgradedConnection ApiClient::upgrade(const std::string& target, const std::string& protocol) const {
  const std::string doing = "GET " + target + " (upgrade to " + protocol + ")";
  auto request = make_request("GET", target, std::nullopt);
  request.set(http::field::connection, "Upgrade");
  request.set(http::field::upgrade, protocol);
  UniqueFd fd = connect_to_daemon();
  DeadlineStream stream(fd.get());
  send_request(stream, request, doing, timeout_);
  // A 1xx reply has no body: whatever else the server sent is left in `buffer`, the first
  // bytes of the raw stream.
  boost::beast::flat_buffer buffer;
  const auto response = read_reply(stream, buffer, doing, timeout_);
  if (response.result() != http::status::switching_protocols) {
    ApiResponse failed = to_api_response(response);
    if (failed.ok())
      throw Error("kdomd did not switch " + target + " to " + protocol + " (it answered " +
                  std::to_string(failed.status) + ")");
    throw Error(api_error_message(failed));
  }
  UpgradedConnection connection;
  const auto early = buffer.data();
  connection.early_bytes.assign(static_cast<const char*>(early.data()), early.size());
  connection.fd = std::move(fd);
  return connection;
}

std::string api_error_message(const ApiResponse& response) {
  if (response.body.is_object()) {
    const auto error = response.body.find("error");
    if (error != response.body.end() && error->is_string() && !error->get<std::string>().empty())
      return error->get<std::string>();
  }
  std::string text = response.text.substr(0, 200);
  const auto line_end = text.find_first_of("\r\n");
  if (line_end != std::string::npos) text.resize(line_end);
  return "kdomd answered " + std::to_string(response.status) + (text.empty() ? "" : ": " + text);
}

std::string url_path_segment(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      encoded += '%';
      encoded += kHex[c >> 4];
      encoded += kHex[c & 15];
    }
  }
  return encoded;
}

}  // namespace kdom::cli
