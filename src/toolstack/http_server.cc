// HttpServer: Beast's synchronous HTTP/1.1 parser and serializer over accepted socket fds.
#include "toolstack/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstring>

#include "base/error.h"
#include "base/unix_socket.h"
#include "base/eventfd.h"
#include "base/log.h"
#include "base/stream_socket.h"

namespace kdom::toolstack {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

// A client that sends nothing for this long is disconnected (streams excepted).
constexpr int kIdleSeconds = 120;

void set_receive_timeout(int fd, int seconds) {
  timeval timeout{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
}

std::string percent_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(text[i] == '+' ? ' ' : text[i]);
    }
  }
  return out;
}

HttpRequest to_request(const http::request<http::string_body>& message) {
  HttpRequest request;
  request.method = std::string(message.method_string());
  const std::string target_text(message.target());
  std::string_view target = target_text;
  const size_t question = target.find('?');
  request.path = percent_decode(target.substr(0, question));
  if (question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      const size_t equals = pair.find('=');
      request.query[percent_decode(pair.substr(0, equals))] =
          equals == std::string_view::npos ? "" : percent_decode(pair.substr(equals + 1));
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
  }
  for (const auto& field : message) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    request.headers[name] = std::string(field.value());
  }
  request.body = message.body();
  return request;
}

bool token_matches(const std::string& header, const std::string& token) {
  const std::string expected = "Bearer " + token;
  if (header.size() != expected.size()) return false;
  unsigned char difference = 0;  // the same time whatever the first wrong byte
  for (size_t i = 0; i < header.size(); ++i) difference |= static_cast<unsigned char>(header[i] ^ expected[i]);
  return difference == 0;
}

}  // namespace

HttpReply HttpReply::json(unsigned status, const nlohmann::json& body) {
  HttpReply reply;
  reply.status = status;
  reply.body = body.dump() + "\n";
  return reply;
}

HttpReply HttpReply::error(unsigned status, const std::string& message) {
  return json(status, {{"error", message}});
}

bool write_chunk(int fd, std::string_view data) {
  if (data.empty()) return true;  // an empty chunk would end the body
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  return send_all(fd, size) && send_all(fd, data) && send_all(fd, "\r\n");
}

HttpServer::HttpServer(Handler handler)
    : handler_(std::move(handler)), stop_fd_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::serve(UniqueFd listener_fd, std::string token) {
  auto listener = std::make_unique<Listener>();
  listener->fd = std::move(listener_fd);
  listener->token = std::move(token);
  Listener& ref = *listener;
  listener->thread = std::thread([this, &ref] { accept_loop(ref); });
  listeners_.push_back(std::move(listener));
}

void HttpServer::stop() {
  signal_eventfd(stop_fd_.get());
  for (auto& listener : listeners_)
    if (listener->thread.joinable()) listener->thread.join();
  listeners_.clear();
  // Requests in progress get a moment to finish; streams (a followed console) may not end.
  std::unique_lock lock(mutex_);
  idle_.wait_for(lock, std::chrono::seconds(2), [this] { return connections_ == 0; });
}

void HttpServer::accept_loop(Listener& listener) {
  for (;;) {
    pollfd fds[2] = {{listener.fd.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log_line(std::string("http: poll failed: ") + std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    int fd = ::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client went away, or out of fds for a moment
    {
      std::lock_guard lock(mutex_);
      if (connections_ >= kMaxConnections) {
        const std::string body = "{\"error\":\"kdomd has too many clients\"}\n";
        send_all(fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
        ::close(fd);
        continue;
      }
      ++connections_;
    }
    std::thread([this, fd, token = listener.token] {
      serve_connection(fd, token);
      std::lock_guard lock(mutex_);
      --connections_;
      idle_.notify_all();
    }).detach();
  }
}

void HttpServer::serve_connection(int fd, const std::string& token) {
  asio::io_context io;
  asio::posix::stream_descriptor stream(io, fd);  // owns fd from here on
  boost::beast::flat_buffer buffer;
  set_receive_timeout(fd, kIdleSeconds);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxBodyBytes);
    parser.header_limit(kMaxHeaderBytes);
    boost::system::error_code failure;
    http::read(stream, buffer, parser, failure);
    if (failure == http::error::end_of_stream || failure == asio::error::eof) return;
    HttpReply reply;
    bool keep_alive = false;
    unsigned version = 11;
    if (failure == http::error::body_limit) {
      reply = HttpReply::error(413, "the request body is larger than " + std::to_string(kMaxBodyBytes) + " bytes");
    } else if (failure == http::error::header_limit) {
      reply = HttpReply::error(431, "the request headers are larger than " + std::to_string(kMaxHeaderBytes) + " bytes");
    } else if (failure == asio::error::would_block || failure == asio::error::try_again) {
      return;  // idle too long
    } else if (failure) {
      reply = HttpReply::error(400, "malformed HTTP request: " + failure.message());
    } else {
      const auto& message = parser.get();
      version = message.version();
      keep_alive = message.keep_alive();
      HttpRequest request = to_request(message);
      if (!token.empty() && !token_matches(request.headers["authorization"], token)) {
        reply = HttpReply::error(401, "this listener needs the header 'Authorization: Bearer TOKEN' (kdomd --token-file)");
      } else {
        try {
          reply = handler_(request);
        } catch (const std::exception& error) {
          reply = HttpReply::error(500, std::string("internal error: ") + error.what());
        }
      }
    }

    http::response<http::string_body> response{static_cast<http::status>(reply.status), version};
    response.set(http::field::server, "kdomd");
    if (reply.stream) {
      set_receive_timeout(fd, 0);
      if (reply.status == 101) {
        response.set(http::field::connection, "Upgrade");
        response.set(http::field::upgrade, "kdom-console");
      } else {
        response.set(http::field::content_type, reply.content_type);
        response.chunked(true);
      }
      http::response_serializer<http::string_body> serializer{response};
      http::write_header(stream, serializer, failure);
      if (failure) return;
      reply.stream(fd);
      if (reply.status != 101) send_all(fd, "0\r\n\r\n");
      return;
    }
    response.set(http::field::content_type, reply.content_type);
    response.body() = std::move(reply.body);
    response.keep_alive(keep_alive);
    response.prepare_payload();
    http::write(stream, response, failure);
    if (failure || !keep_alive) return;
  }
}

UniqueFd listen_unix(const std::string& path, unsigned mode, int group_id) {
  const sockaddr_un address = unix_socket_address(path, "API socket");
  struct stat info{};
  if (::lstat(path.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) throw Error("'" + path + "' exists and is not a socket: refusing to replace it");
    UniqueFd probe(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0)
      throw Error("another kdomd is listening on " + path);
    ::unlink(path.c_str());  // left by a daemon that is gone
  }
  UniqueFd fd(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  check_syscall(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)), "bind " + path);
  if (::chmod(path.c_str(), mode) != 0 || (group_id >= 0 && ::chown(path.c_str(), 0, static_cast<gid_t>(group_id)) != 0)) {
    const int error = errno;
    ::unlink(path.c_str());
    throw SystemError("cannot set the owner or mode of " + path, error);
  }
  check_syscall(::listen(fd.get(), 128), "listen " + path);
  return fd;
}

UniqueFd listen_tcp(const std::string& address_and_port, const std::string& option) {
  const size_t colon = address_and_port.rfind(':');
  if (colon == std::string::npos || colon + 1 == address_and_port.size())
    throw Error(option + " '" + address_and_port + "' must be ADDRESS:PORT");
  std::string host = address_and_port.substr(0, colon);
  const std::string port_text = address_and_port.substr(colon + 1);
  if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port_text) > 65535)
    throw Error(option + " '" + address_and_port + "': bad port '" + port_text + "'");
  const uint16_t port = static_cast<uint16_t>(std::stoul(port_text));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof(*v4);
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof(*v6);
  } else {
    throw Error(option + " '" + address_and_port + "': '" + host + "' is not an IPv4 or IPv6 address");
  }
  UniqueFd fd(check_syscall(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  check_syscall(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&storage), length), "bind " + address_and_port);
  check_syscall(::listen(fd.get(), 128), "listen " + address_and_port);
  return fd;
}

}  // namespace kdom::toolstack
