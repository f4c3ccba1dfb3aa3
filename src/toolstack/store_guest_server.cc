// StoreGuestServer: one accepting thread per served domain and one thread per connection (at
// most kMaxConnectionsPerDomain), each waiting on its socket and the domain's stop eventfd.
#include "toolstack/store_guest_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <thread>

#include "base/eventfd.h"
#include "base/stream_socket.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace kdom::toolstack {

using nlohmann::json;

struct StoreGuestServer::Listener {
  uint32_t domain = 0;
  std::string path;
  UniqueFd fd;
  UniqueFd stop;
  std::thread accepting;
  std::mutex mutex;
  std::list<std::thread> connections;
  std::atomic<size_t> open{0};
};

namespace {

bool send_line(int fd, const std::string& line) { return send_all(fd, line + "\n"); }

// Waits for `fd` to be readable (or hung up; -1: none) or `stop` to fire; false when stopping.
bool wait_readable(int fd, int stop, int timeout_ms) {
  pollfd fds[2] = {{fd, POLLIN | POLLRDHUP, 0}, {stop, POLLIN, 0}};
  const int ready = ::poll(fds, 2, timeout_ms);
  return !(ready > 0 && fds[1].revents);
}

std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

}  // namespace

std::string store_line_escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string store_line_unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char next = text[++i];
    out += next == 'n' ? '\n' : next;
  }
  return out;
}

std::string StoreGuestServer::handle(uint32_t domain, const std::string& line) {
  const size_t first = line.find(' ');
  const std::string command = line.substr(0, first);
  std::string path, value;
  if (first != std::string::npos) {
    const size_t second = line.find(' ', first + 1);
    path = line.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1);
    if (second != std::string::npos) value = store_line_unescape(line.substr(second + 1));
  }
  try {
    if (command == "READ") {
      const auto read = store_.read(domain, path);
      if (!read) return "ERR no store node " + Store::canonical(domain, path);
      return "OK " + store_line_escape(*read);
    }
    if (command == "WRITE") {
      store_.write(domain, path, value);
      return "OK";
    }
    if (command == "LS") {
      std::string names;
      for (const auto& name : store_.children(domain, path)) names += (names.empty() ? "" : " ") + name;
      return "OK " + names;
    }
    if (command == "RM") {
      store_.remove(domain, path);
      return "OK";
    }
    return "ERR unknown request '" + one_line(command.substr(0, 20)) + "' (READ, WRITE, LS, RM, WATCH)";
  } catch (const std::exception& error) {
    return "ERR " + one_line(error.what());
  }
}

void StoreGuestServer::serve(uint32_t domain, const std::string& socket_path) {
  stop(domain);  // a restarted VMM: the old listener ends first
  auto listener = std::make_unique<Listener>();
  listener->domain = domain;
  listener->path = socket_path;
  const sockaddr_un address = unix_socket_address(socket_path, "store socket");
  ::unlink(socket_path.c_str());
  listener->fd = UniqueFd(check_syscall(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  check_syscall(::bind(listener->fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)),
                "bind " + socket_path);
  check_syscall(::listen(listener->fd.get(), 8), "listen " + socket_path);
  listener->stop = UniqueFd(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
  Listener& ref = *listener;
  listener->accepting = std::thread([this, &ref] { accept_loop(ref); });
  std::lock_guard lock(mutex_);
  listeners_[domain] = std::move(listener);
}

void StoreGuestServer::accept_loop(Listener& listener) {
  for (;;) {
    if (!wait_readable(listener.fd.get(), listener.stop.get(), -1)) return;
    UniqueFd connection(::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!connection.valid()) continue;
    if (listener.open >= kMaxConnectionsPerDomain) {
      send_line(connection.get(), "ERR this domain has " + std::to_string(kMaxConnectionsPerDomain) +
                                      " store connections open, the most it may");
      continue;
    }
    // A guest that stops reading (its vsock buffers full) must not hold this thread, nor a
    // stop() waiting for it, for longer than this.
    const timeval send_timeout{10, 0};
    ::setsockopt(connection.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
    ++listener.open;
    std::lock_guard lock(listener.mutex);
    listener.connections.emplace_back([this, &listener, fd = std::move(connection)]() mutable {
      serve_connection(listener, fd.get());
      --listener.open;
    });
  }
}

void StoreGuestServer::serve_connection(Listener& listener, int fd) {
  std::string buffer;
  char chunk[4096];
  for (;;) {
    if (!wait_readable(fd, listener.stop.get(), -1)) return;
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    buffer.append(chunk, static_cast<size_t>(n));
    for (size_t end; (end = buffer.find('\n')) != std::string::npos;) {
      std::string line = buffer.substr(0, end);
      buffer.erase(0, end + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("WATCH ", 0) == 0) {
        serve_watch(listener, fd, line.substr(6));  // the connection's last request
        return;
      }
      if (!send_line(fd, handle(listener.domain, line))) return;
    }
    if (buffer.size() > kMaxLineBytes) {
      send_line(fd, "ERR a request line is longer than " + std::to_string(kMaxLineBytes) + " bytes");
      return;
    }
  }
}

void StoreGuestServer::serve_watch(Listener& listener, int fd, const std::string& path) {
  std::shared_ptr<EventBus::Subscription> watch;
  try {
    watch = store_.watch(listener.domain, path);
  } catch (const std::exception& error) {
    send_line(fd, "ERR " + one_line(error.what()));
    return;
  }
  bool open = send_line(fd, "OK") && send_line(fd, "EVENT watch " + Store::canonical(listener.domain, path));
  while (open) {
    json event;
    const auto next = watch->next(event, std::chrono::seconds(1));
    if (next == EventBus::Subscription::Next::kEnded) break;
    if (next == EventBus::Subscription::Next::kEvent)
      open = send_line(fd, "EVENT " + event.value("event", "") + " " + event.value("path", ""));
    else
      open = !peer_hung_up(fd) && wait_readable(-1, listener.stop.get(), 0);
  }
  store_.unwatch(listener.domain, watch);
}

void StoreGuestServer::stop(uint32_t domain) {
  std::unique_ptr<Listener> listener;
  {
    std::lock_guard lock(mutex_);
    auto it = listeners_.find(domain);
    if (it == listeners_.end()) return;
    listener = std::move(it->second);
    listeners_.erase(it);
  }
  signal_eventfd(listener->stop.get());
  listener->accepting.join();
  std::list<std::thread> connections;
  {
    std::lock_guard lock(listener->mutex);
    connections.swap(listener->connections);
  }
  for (auto& thread : connections) thread.join();
  ::unlink(listener->path.c_str());
}

StoreGuestServer::StoreGuestServer(Store& store) : store_(store) {}

StoreGuestServer::~StoreGuestServer() {
  std::vector<uint32_t> domains;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [domain, listener] : listeners_) domains.push_back(domain);
  }
  for (uint32_t domain : domains) stop(domain);
}

}  // namespace kdom::toolstack
