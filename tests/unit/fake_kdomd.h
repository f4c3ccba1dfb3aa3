// FakeKdomd: a tiny stand-in for kdomd in unit tests of the CLI's API client and verbs. It
// listens on a Unix socket in a temporary directory, serves one connection at a time in its
// own thread, records each request (method, target, headers that matter, body), and answers
// with what the test's handler returns: a JSON reply, raw bytes (chunked bodies, a 101 upgrade
// followed by a byte stream), or nothing for a while (timeouts).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kdom::cli::fake {

struct RecordedRequest {
  std::string method;
  std::string target;
  std::string body;
  std::string upgrade;  // the Upgrade header, if any
};

struct CannedReply {
  CannedReply() = default;
  CannedReply(int status, std::string body) : status(status), body(std::move(body)) {}

  int status = 200;
  std::string body = "{}";
  std::string raw;                                // when set: written as it is, instead of a reply
  std::function<void(int fd)> after_raw;          // then given the connection (upgrades)
  std::chrono::milliseconds delay{0};             // wait this long before answering
};

class FakeKdomd {
 public:
  using Handler = std::function<CannedReply(const RecordedRequest&)>;

  explicit FakeKdomd(Handler handler) : handler_(std::move(handler)) {
    std::string pattern = std::filesystem::temp_directory_path().string() + "/kdom-fake-kdomd-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw SystemError("mkdtemp", errno);
    dir_ = pattern;
    path_ = dir_ + "/kdomd.sock";
    listener_.reset(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
    check_syscall(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), "bind");
    check_syscall(::listen(listener_.get(), 16), "listen");
    int pipe_fds[2];
    check_syscall(::pipe2(pipe_fds, O_CLOEXEC), "pipe");
    stop_read_.reset(pipe_fds[0]);
    stop_write_.reset(pipe_fds[1]);
    thread_ = std::thread([this] { serve(); });
  }

  ~FakeKdomd() {
    const char byte = 0;
    [[maybe_unused]] const ssize_t ignored = ::write(stop_write_.get(), &byte, 1);
    thread_.join();
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
  }

  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }

  std::vector<RecordedRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  void serve() {
    for (;;) {
      pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents) return;
      UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (connection.valid()) serve_one(std::move(connection));
    }
  }

  void serve_one(UniqueFd connection) {
    namespace http = boost::beast::http;
    boost::asio::io_context context;
    boost::asio::local::stream_protocol::socket socket(context);
    socket.assign(boost::asio::local::stream_protocol(), connection.release());
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> request;
    boost::system::error_code ec;
    http::read(socket, buffer, request, ec);
    if (ec) return;
    RecordedRequest recorded{std::string(request.method_string()), std::string(request.target()), request.body(),
                             std::string(request[http::field::upgrade])};
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(recorded);
    }
    const CannedReply reply = handler_(recorded);
    std::this_thread::sleep_for(reply.delay);
    if (!reply.raw.empty()) {
      boost::asio::write(socket, boost::asio::buffer(reply.raw), ec);
      if (reply.after_raw) reply.after_raw(socket.native_handle());
      return;
    }
    http::response<http::string_body> response{static_cast<http::status>(reply.status), 11};
    response.set(http::field::content_type, "application/json");
    response.body() = reply.body;
    response.prepare_payload();
    http::write(socket, response, ec);
  }

  Handler handler_;
  std::string dir_, path_;
  UniqueFd listener_, stop_read_, stop_write_;
  mutable std::mutex mutex_;
  std::vector<RecordedRequest> requests_;
  std::thread thread_;
};

}  // namespace kdom::cli::fake
