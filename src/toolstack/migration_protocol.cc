// The daemons' migration messages: framing, the hello and its token check, connecting.
#include "toolstack/migration_protocol.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/stream_socket.h"

namespace kdom::toolstack {

namespace {

// Reads exactly `length` bytes, each wait for more at most `timeout_ms`.
void receive_exactly(int fd, void* data, size_t length, int timeout_ms, const std::string& peer,
                     const std::string& waiting_for) {
  auto* bytes = static_cast<uint8_t*>(data);
  size_t done = 0;
  while (done < length) {
    pollfd ready{fd, POLLIN, 0};
    const int polled = ::poll(&ready, 1, timeout_ms);
    if (polled < 0 && errno == EINTR) continue;
    if (polled == 0)
      throw MigrationError(peer + " sent nothing for " + std::to_string(timeout_ms / 1000) + " s while kdomd waited for " +
                           waiting_for);
    const ssize_t n = ::recv(fd, bytes + done, length - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw MigrationError("the connection to " + peer + " failed: " + std::strerror(errno));
    if (n == 0) throw MigrationError(peer + " closed the connection while kdomd waited for " + waiting_for);
    done += static_cast<size_t>(n);
  }
}

void send_bytes(int fd, std::string_view bytes, const std::string& peer) {
  if (!send_all(fd, bytes))
    throw MigrationError("the connection to " + peer + " failed" + (errno ? std::string(": ") + std::strerror(errno) : ""));
}

bool same_token(const std::string& given, const std::string& expected) {
  if (given.size() != expected.size()) return false;
  unsigned char difference = 0;  // the same time whatever the first wrong byte
  for (size_t i = 0; i < given.size(); ++i) difference |= static_cast<unsigned char>(given[i] ^ expected[i]);
  return difference == 0;
}

void put_u32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint32_t get_u32(const uint8_t* bytes) {
  return uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 | uint32_t{bytes[2]} << 16 | uint32_t{bytes[3]} << 24;
}

}  // namespace

void send_migration_message(int fd, const nlohmann::json& message, const std::string& peer) {
  const std::string text = message.dump();
  if (text.size() > kMaxMigrationMessageBytes) throw MigrationError("a migration message to " + peer + " is too large");
  std::string framed;
  put_u32(framed, static_cast<uint32_t>(text.size()));
  framed += text;
  send_bytes(fd, framed, peer);
}

nlohmann::json receive_migration_message(int fd, int timeout_ms, const std::string& peer,
                                         const std::string& waiting_for) {
  uint8_t length_bytes[4];
  receive_exactly(fd, length_bytes, sizeof(length_bytes), timeout_ms, peer, waiting_for);
  const uint32_t length = get_u32(length_bytes);
  if (length > kMaxMigrationMessageBytes)
    throw MigrationError(peer + " sent a message of " + std::to_string(length) + " bytes (at most " +
                         std::to_string(kMaxMigrationMessageBytes) + ")");
  std::string text(length, '\0');
  receive_exactly(fd, text.data(), length, timeout_ms, peer, waiting_for);
  nlohmann::json message = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!message.is_object()) throw MigrationError(peer + " sent a message that is not a JSON object");
  return message;
}

void send_migration_hello(int fd, const std::string& token, nlohmann::json details, const std::string& peer) {
  std::string header(kMigrationMagic, sizeof(kMigrationMagic));
  put_u32(header, kMigrationVersion);
  send_bytes(fd, header, peer);
  details["token"] = token;
  send_migration_message(fd, details, peer);
}

nlohmann::json receive_migration_hello(int fd, const std::string& expected_token, int timeout_ms) {
  const std::string peer = "the migrating host";
  uint8_t header[sizeof(kMigrationMagic) + 4];
  receive_exactly(fd, header, sizeof(header), timeout_ms, peer, "the migration header");
  if (std::memcmp(header, kMigrationMagic, sizeof(kMigrationMagic)) != 0)
    throw MigrationError("a connection to the migration port did not begin with kdom's migration header");
  const uint32_t version = get_u32(header + sizeof(kMigrationMagic));
  if (version != kMigrationVersion)
    throw MigrationError("a migration of protocol version " + std::to_string(version) + " (this kdomd speaks " +
                         std::to_string(kMigrationVersion) + ")");
  nlohmann::json hello = receive_migration_message(fd, timeout_ms, peer, "the migration's token");
  const auto token = hello.find("token");
  if (token == hello.end() || !token->is_string() || !same_token(token->get<std::string>(), expected_token))
    throw MigrationError("a migration with the wrong token was refused");
  hello.erase("token");
  return hello;
}

std::pair<std::string, uint16_t> migration_target(const std::string& text) {
  std::string host = text;
  std::string port_text;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string::npos) throw Error("bad migration target '" + text + "': no ']' after the IPv6 address");
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':') throw Error("bad migration target '" + text + "'");
      port_text = host.substr(close + 2);
    }
    host = host.substr(1, close - 1);
  } else if (const size_t colon = host.find(':'); colon != std::string::npos && host.find(':', colon + 1) == std::string::npos) {
    port_text = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty()) throw Error("bad migration target '" + text + "': no host");
  uint16_t port = kDefaultMigrationPort;
  if (!port_text.empty() || text.back() == ':') {
    if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(port_text) == 0 || std::stoul(port_text) > 65535)
      throw Error("bad migration target '" + text + "': the port must be 1-65535");
    port = static_cast<uint16_t>(std::stoul(port_text));
  }
  return {host, port};
}

void tune_migration_socket(int fd) {
  // Keepalive finds a silent peer while nothing is sent; the user timeout a cut link while
  // the stream's bytes go unacknowledged (TCP would retry for 15 minutes).
  const int one = 1, idle = 10, interval = 5, count = 4;
  const unsigned unacknowledged_ms = 20'000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &unacknowledged_ms, sizeof(unacknowledged_ms));
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

UniqueFd connect_migration_peer(const std::string& host, uint16_t port, int timeout_ms) {
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int resolved = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (resolved != 0) throw Error("cannot find migration host '" + host + "': " + ::gai_strerror(resolved));
  std::string last_error = "no address";
  for (const addrinfo* address = found; address; address = address->ai_next) {
    UniqueFd fd(::socket(address->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) continue;
    int result = ::connect(fd.get(), address->ai_addr, address->ai_addrlen);
    if (result != 0 && errno == EINPROGRESS) {
      pollfd ready{fd.get(), POLLOUT, 0};
      int polled;
      do polled = ::poll(&ready, 1, timeout_ms);
      while (polled < 0 && errno == EINTR);
      int error = 0;
      socklen_t length = sizeof(error);
      if (polled == 0) {
        last_error = "no answer within " + std::to_string(timeout_ms / 1000) + " s";
        continue;
      }
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
      result = error == 0 ? 0 : -1;
      errno = error;
    }
    if (result != 0) {
      last_error = std::strerror(errno);
      continue;
    }
    ::freeaddrinfo(found);
    const int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    tune_migration_socket(fd.get());
    return fd;
  }
  ::freeaddrinfo(found);
  throw Error("cannot connect to the migration port " + where + ": " + last_error +
              " (is kdomd there started with --migration-listen?)");
}

}  // namespace kdom::toolstack
