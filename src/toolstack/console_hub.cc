// ConsoleHub: one thread per domain reading the VMM's console socket.
#include "toolstack/console_hub.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "base/error.h"
#include "base/eventfd.h"
#include "base/log.h"
#include "base/unix_socket.h"

namespace kdom::toolstack {

namespace {

constexpr int kReconnectMillis = 100;

// A connection to the socket at `path`, or none (it is not there yet, or no longer, or its
// path cannot be a socket's: the hub's reader thread must not throw).
UniqueFd connect_unix(const std::string& path) {
  sockaddr_un address{};
  try {
    address = unix_socket_address(path, "console socket");
  } catch (const Error&) {
    return UniqueFd();
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0)
    return UniqueFd();
  return fd;
}

}  // namespace

bool ConsoleHub::Follower::next(std::string& chunk) {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [this] { return closed_ || !queue_.empty(); });
  if (queue_.empty()) return false;
  chunk = std::move(queue_.front());
  queue_.pop_front();
  queued_bytes_ -= chunk.size();
  return true;
}

void ConsoleHub::Follower::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  queue_.clear();
  queued_bytes_ = 0;
  ready_.notify_all();
}

ConsoleHub::ConsoleHub(std::string socket_path, std::string log_path)
    : socket_path_(std::move(socket_path)),
      log_path_(std::move(log_path)),
      stop_fd_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")) {
  open_log();
  thread_ = std::thread([this] { run(); });
}

ConsoleHub::~ConsoleHub() { close(); }

void ConsoleHub::close() {
  signal_eventfd(stop_fd_.get());
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  for (const auto& follower : followers_) follower->close();
  followers_.clear();
  connection_.reset();
}

void ConsoleHub::open_log() {
  log_.reset(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!log_.valid()) {
    log_line("console: cannot open log file " + log_path_ + ": " + std::strerror(errno) + " (output kept in memory only)");
    return;
  }
  struct stat info{};
  log_bytes_ = ::fstat(log_.get(), &info) == 0 ? static_cast<uint64_t>(info.st_size) : 0;
}

std::string console_screen_tail(std::string_view output, size_t max_bytes) {
  if (output.size() <= max_bytes) return std::string(output);
  std::string_view tail = output.substr(output.size() - max_bytes);
  // Begin at a line's start unless the tail is one line: a prompt is never cut in half.
  if (const size_t newline = tail.find('\n'); newline != std::string_view::npos && newline + 1 < tail.size())
    tail.remove_prefix(newline + 1);
  return std::string(tail);
}

std::string ConsoleHub::recent() const {
  std::lock_guard lock(mutex_);
  return ring_;
}

std::shared_ptr<ConsoleHub::Follower> ConsoleHub::follow() {
  auto follower = std::make_shared<Follower>();
  std::lock_guard lock(mutex_);
  followers_.insert(follower);
  return follower;
}

void ConsoleHub::unfollow(const std::shared_ptr<Follower>& follower) {
  follower->close();
  std::lock_guard lock(mutex_);
  followers_.erase(follower);
}

bool ConsoleHub::send_input(std::string_view bytes) {
  std::lock_guard lock(mutex_);
  while (!bytes.empty() && connection_.valid()) {
    ssize_t n = ::send(connection_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return bytes.empty();
}

void ConsoleHub::move_log(const std::string& log_path) {
  std::lock_guard lock(mutex_);
  if (::rename(log_path_.c_str(), log_path.c_str()) != 0 && errno != ENOENT)
    log_line("console: cannot rename " + log_path_ + " to " + log_path + ": " + std::strerror(errno));
  ::rename((log_path_ + ".1").c_str(), (log_path + ".1").c_str());
  log_path_ = log_path;
}

void ConsoleHub::append(std::string_view bytes) {
  std::lock_guard lock(mutex_);
  ring_.append(bytes);
  if (ring_.size() > kRingBytes) ring_.erase(0, ring_.size() - kRingBytes);
  if (log_.valid()) {
    if (log_bytes_ + bytes.size() > kLogRotateBytes) {
      ::rename(log_path_.c_str(), (log_path_ + ".1").c_str());
      open_log();
    }
    if (log_.valid() && ::write(log_.get(), bytes.data(), bytes.size()) > 0) log_bytes_ += bytes.size();
  }
  for (auto it = followers_.begin(); it != followers_.end();) {
    Follower& follower = **it;
    std::lock_guard follower_lock(follower.mutex_);
    if (follower.closed_ || follower.queued_bytes_ + bytes.size() > kFollowerQueueBytes) {
      follower.closed_ = true;  // too far behind: cut off rather than wait for it
      follower.queue_.clear();
      follower.ready_.notify_all();
      it = followers_.erase(it);
      continue;
    }
    follower.queue_.emplace_back(bytes);
    follower.queued_bytes_ += bytes.size();
    follower.ready_.notify_all();
    ++it;
  }
}

void ConsoleHub::run() {
  char buffer[16 * 1024];
  for (;;) {
    int fd;
    {
      std::lock_guard lock(mutex_);
      fd = connection_.get();
    }
    if (fd < 0) {
      UniqueFd connection = connect_unix(socket_path_);
      if (connection.valid()) {
        std::lock_guard lock(mutex_);
        connection_ = std::move(connection);
        continue;
      }
    }
    pollfd fds[2] = {{stop_fd_.get(), POLLIN, 0}, {fd, POLLIN, 0}};
    const int ready = ::poll(fds, fd >= 0 ? 2 : 1, fd >= 0 ? -1 : kReconnectMillis);
    if (ready < 0 && errno != EINTR) return;
    if (fds[0].revents) return;
    if (fd < 0 || !(fds[1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      append({buffer, static_cast<size_t>(n)});
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      std::lock_guard lock(mutex_);
      connection_.reset();  // the VMM went; a restarted one listens again at the same path
    }
  }
}

}  // namespace kdom::toolstack
