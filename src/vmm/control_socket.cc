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

// The request's op, or "" when the line is not an object with an op string.
std::string op_of(const nlohmann::json& request) {
  if (!request.is_object()) return "";
  auto op = request.find("op");
  return op != request.end() && op->is_string() ? op->get<std::string>() : "";
}

// Room for a few fds: a client that sends more than one gets the rest closed here, not left
// open in this process (what does not fit, the kernel closes).
constexpr size_t kMaxPassedFds = 4;

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
                             EventStream* stream, MigrationRunner* migrations)
    : path_(path), events_(events), requests_(requests), stream_(stream), migrations_(migrations) {
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

ssize_t ControlSocket::receive(Connection& connection, char* buffer, size_t size, bool& got_fd) {
  iovec data{buffer, size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  const ssize_t n = ::recvmsg(connection.fd.get(), &message, MSG_CMSG_CLOEXEC);
  if (n < 0) return n;
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int passed;
      std::memcpy(&passed, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      UniqueFd owned(passed);
      // One fd is kept; more are closed (owned goes out of scope).
      if (!connection.passed.valid() && n > 0) {
        connection.passed = std::move(owned);
        got_fd = true;
      }
    }
  }
  return n;
}

std::optional<std::string> ControlSocket::start_migration(int fd, UniqueFd stream, const nlohmann::json& request) {
  if (!stream.valid())
    return "migrate-send: no fd came with the request (pass the stream's fd with SCM_RIGHTS on the sendmsg that "
           "carries the request line)";
  auto it = connections_.find(fd);
  UniqueFd socket = std::move(it->second->fd);
  try {
    migrations_->start(socket, stream, request);
  } catch (const std::exception& error) {
    it->second->fd = std::move(socket);
    return std::string("migrate-send: ") + error.what();
  }
  events_.remove(fd);
  connections_.erase(it);
  return std::nullopt;
}

void ControlSocket::serve(int fd) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  Connection& connection = *it->second;
  char buffer[4096];
  for (;;) {
    bool got_fd = false;
    ssize_t n = receive(connection, buffer, sizeof(buffer), got_fd);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      close_connection(fd);  // the client is done (or the connection failed)
      return;
    }
    const size_t chunk_start = connection.pending.size();
    connection.pending.append(buffer, static_cast<size_t>(n));
    if (got_fd) {
      // A read that brings fds ends with the message that carried them (the kernel glues
      // earlier messages before it, never later ones): the fd's line is the last to begin in
      // what was read, or the one it continues.
      connection.passed_at = chunk_start;
      for (size_t at = connection.pending.size() - 1; at > chunk_start; --at) {
        if (connection.pending[at - 1] == '\n') {
          connection.passed_at = at;
          break;
        }
      }
    }
    size_t newline;
    while ((newline = connection.pending.find('\n')) != std::string::npos) {
      std::string line = connection.pending.substr(0, newline);
      connection.pending.erase(0, newline + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      // The fd passed with this line, if its bytes began here; a later line's stays.
      UniqueFd passed;
      if (connection.passed.valid()) {
        if (connection.passed_at <= newline)
          passed = std::move(connection.passed);
        else
          connection.passed_at -= newline + 1;
      }
      const nlohmann::json request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      const std::string op = op_of(request);
      if (stream_ && op == "events") {
        if (subscribe(fd)) return;  // the connection is the stream's now; what else it sent is ignored
        if (!send_all(fd, R"({"ok":false,"error":"too many event subscribers, at most 8"})" "\n")) {
          close_connection(fd);
          return;
        }
        continue;
      }
      if (migrations_ && op == "migrate-send") {
        const auto refused = start_migration(fd, std::move(passed), request);
        if (!refused) return;  // the migration's now; what else the connection sent is ignored
        if (!send_all(fd, nlohmann::json{{"ok", false}, {"error", *refused}}.dump() + "\n")) {
          close_connection(fd);
          return;
        }
        continue;
      }
      passed.reset();  // an fd only migrate-send takes
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
