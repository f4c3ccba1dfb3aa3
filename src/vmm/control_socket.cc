// The control socket's transport: listening, accepting, splitting lines, writing replies.
#include "vmm/control_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/unix_socket.h"
#include "base/log.h"

namespace kdom::vmm {

namespace {

// Sends all of `data` unless the peer stops reading or goes away; false then.
bool send_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool is_events_request(const std::string& line) {
  const nlohmann::json request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!request.is_object()) return false;
  auto op = request.find("op");
  return op != request.end() && op->is_string() && op->get<std::string>() == "events";
}

}  // namespace

UniqueFd listen_on_unix_socket(const std::string& path, const std::string& what) {
  const sockaddr_un address = unix_socket_address(path, what);
  struct stat existing{};
  if (::lstat(path.c_str(), &existing) == 0)
    throw Error(what + " path '" + path + "' already exists (remove it if no kdom uses it)");
  UniqueFd listener(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket"));
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    if (error == EADDRINUSE) throw Error(what + " path '" + path + "' already exists (remove it if no kdom uses it)");
    throw SystemError("cannot create " + what + " '" + path + "'", error);
  }
  if (::listen(listener.get(), 8) != 0) {
    const int error = errno;
    ::unlink(path.c_str());
    throw SystemError("listen on " + what + " '" + path + "'", error);
  }
  return listener;
}

ControlSocket::ControlSocket(const std::string& path, EventLoop& events, ControlRequests& requests,
                             EventStream* stream)
    : path_(path), events_(events), requests_(requests), stream_(stream) {
  listener_ = listen_on_unix_socket(path, "control socket");
  try {
    events_.add(listener_.get(), [this] { accept_clients(); });
  } catch (...) {
    ::unlink(path_.c_str());
    throw;
  }
}

ControlSocket::~ControlSocket() {
  for (auto& [fd, connection] : connections_) events_.remove(fd);
  connections_.clear();
  events_.remove(listener_.get());
  ::unlink(path_.c_str());
}

void ControlSocket::accept_clients() {
  for (;;) {
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!client.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        log_line(std::string("control socket: accept: ") + std::strerror(errno));
      return;
    }
    if (connections_.size() >= kMaxConnections) {
      send_all(client.get(), R"({"ok":false,"error":"too many control connections"})" "\n");
      continue;  // closed here
    }
    const int fd = client.get();
    auto connection = std::make_unique<Connection>();
    connection->fd = std::move(client);
    connections_[fd] = std::move(connection);
    events_.add(fd, [this, fd] { serve(fd); });
  }
}

void ControlSocket::serve(int fd) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  Connection& connection = *it->second;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      close_connection(fd);  // the client is done (or the connection failed)
      return;
    }
    connection.pending.append(buffer, static_cast<size_t>(n));
    size_t newline;
    while ((newline = connection.pending.find('\n')) != std::string::npos) {
      std::string line = connection.pending.substr(0, newline);
      connection.pending.erase(0, newline + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (stream_ && is_events_request(line)) {
        if (subscribe(fd)) return;  // the connection is the stream's now; what else it sent is ignored
        if (!send_all(fd, R"({"ok":false,"error":"too many event subscribers, at most 8"})" "\n")) {
          close_connection(fd);
          return;
        }
        continue;
      }
      if (!send_all(fd, requests_.handle_line(line) + "\n")) {
        close_connection(fd);
        return;
      }
    }
    if (connection.pending.size() > kMaxLineBytes) {
      send_all(fd, R"({"ok":false,"error":"request line longer than 65536 bytes"})" "\n");
      close_connection(fd);
      return;
    }
  }
}

bool ControlSocket::subscribe(int fd) {
  static_assert(EventStream::kMaxSubscribers == 8, "the error reply above names the limit");
  if (stream_->subscriber_count() >= EventStream::kMaxSubscribers) return false;
  auto it = connections_.find(fd);
  UniqueFd socket = std::move(it->second->fd);
  events_.remove(fd);
  connections_.erase(it);
  // Only this thread adds subscribers, so there is room still.
  stream_->subscribe(socket, R"({"ok":true})" "\n");
  return true;
}

void ControlSocket::close_connection(int fd) {
  events_.remove(fd);
  connections_.erase(fd);
}

}  // namespace kdom::vmm
