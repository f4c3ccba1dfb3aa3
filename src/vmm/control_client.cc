// The control socket's client: connect, send one JSON line, read one reply line. Used by the
// kdom commands that act on a `kdom run` domain and by kdomd, which speaks to its VMMs this way.
#include "vmm/control_client.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace kdom::vmm {

namespace {

constexpr int kDefaultReplySeconds = 10;

// A connection to the socket at `address`, or -errno.
int connect_to(const sockaddr_un& address, UniqueFd& fd, int reply_seconds = kDefaultReplySeconds) {
  fd.reset(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  timeval timeout{reply_seconds, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0 ? 0 : -errno;
}

}  // namespace

bool control_socket_answers(const std::string& path) {
  UniqueFd fd;
  return connect_to(unix_socket_address(path, "control socket"), fd) == 0;
}

namespace {

// The line's first bytes, with `passed` attached (SCM_RIGHTS): the bytes sent.
ssize_t send_with_fd(int socket, const std::string& line, int passed) {
  iovec data{const_cast<char*>(line.data()), line.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &passed, sizeof(int));
  return ::sendmsg(socket, &message, MSG_NOSIGNAL);
}

// A connection to the control socket at `path` with `request` sent on it, and `passed` (when
// not -1) with the line's first byte.
UniqueFd send_request(const std::string& path, const nlohmann::json& request, int reply_seconds, int passed = -1) {
  UniqueFd fd;
  if (const int failed = connect_to(unix_socket_address(path, "control socket"), fd, reply_seconds); failed != 0) {
    const int error = -failed;
    if (error == ENOENT) throw Error("no control socket at '" + path + "' (start the domain with kdom run --control PATH)");
    if (error == ECONNREFUSED) throw Error("nothing listens on control socket '" + path + "' (has its kdom ended?)");
    throw SystemError("cannot connect to control socket '" + path + "'", error);
  }
  const std::string line = request.dump() + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n = sent == 0 && passed >= 0 ? send_with_fd(fd.get(), line, passed)
                                         : ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw SystemError("cannot send to control socket '" + path + "'", errno);
    sent += static_cast<size_t>(n);
  }
  return fd;
}

// Reads the reply line; with `exactly`, byte by byte so that nothing after it is consumed.
nlohmann::json read_reply(int fd, const std::string& path, bool exactly, int reply_seconds) {
  std::string reply;
  char buffer[4096];
  while (reply.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd, buffer, exactly ? 1 : sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      throw Error("no reply on control socket '" + path + "' within " + std::to_string(reply_seconds) + " s");
    if (n < 0) throw SystemError("cannot read from control socket '" + path + "'", errno);
    if (n == 0) break;
    reply.append(buffer, static_cast<size_t>(n));
  }
  reply = reply.substr(0, reply.find('\n'));
  nlohmann::json parsed = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object())
    throw Error("control socket '" + path + "' gave no valid reply (got '" + reply.substr(0, 80) + "')");
  if (parsed.value("ok", false) != true) {
    auto error = parsed.find("error");
    throw Error(error != parsed.end() && error->is_string() ? error->get<std::string>()
                                                             : "the request failed: " + reply.substr(0, 200));
  }
  return parsed;
}

}  // namespace

nlohmann::json control_request(const std::string& path, const nlohmann::json& request, int reply_seconds) {
  UniqueFd fd = send_request(path, request, reply_seconds);
  return read_reply(fd.get(), path, /*exactly=*/false, reply_seconds);
}

nlohmann::json control_request_with_fd(const std::string& path, const nlohmann::json& request, int fd,
                                      int reply_seconds) {
  UniqueFd connection = send_request(path, request, reply_seconds, fd);
  return read_reply(connection.get(), path, /*exactly=*/false, reply_seconds);
}

UniqueFd subscribe_to_events(const std::string& path) {
  UniqueFd fd = send_request(path, {{"op", "events"}}, kDefaultReplySeconds);
  read_reply(fd.get(), path, /*exactly=*/true, kDefaultReplySeconds);
  return fd;
}

}  // namespace kdom::vmm
