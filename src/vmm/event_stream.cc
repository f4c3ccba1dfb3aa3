// The event stream's subscribers: non-blocking sends, bounded buffers, overflow.
#include "vmm/event_stream.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "base/error.h"
#include "base/log.h"

namespace kdom::vmm {

namespace {

double unix_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One JSON line. A message with bytes that are not UTF-8 (a guest's, say) must not cost the
// event: they are replaced.
std::string event_line(const std::string& name, const nlohmann::json& details) {
  nlohmann::json event = {{"event", name}, {"time", unix_time_now()}};
  if (details.is_object())
    for (const auto& [key, value] : details.items()) event[key] = value;
  return event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

EventStream::EventStream(EventLoop& loop) : loop_(loop) {}

EventStream::~EventStream() {
  std::lock_guard lock(mutex_);
  for (auto& [fd, subscriber] : subscribers_) {
    flush(subscriber);  // the last events (stopping) go out if the socket takes them now
    loop_.remove(fd);
  }
  subscribers_.clear();
}

bool EventStream::subscribe(UniqueFd& socket, const std::string& first_line) {
  std::lock_guard lock(mutex_);
  if (subscribers_.size() >= kMaxSubscribers) return false;
  const int fd = socket.get();
  if (int flags = ::fcntl(fd, F_GETFL); flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  // Its input is watched only to learn when it hangs up; its output once it backs up.
  loop_.add(fd, [this, fd] { serve(fd); });
  Subscriber& subscriber = subscribers_[fd];
  subscriber.socket = std::move(socket);
  subscriber.waiting = first_line;
  if (!flush(subscriber)) drop(fd);
  return true;
}

size_t EventStream::subscriber_count() const {
  std::lock_guard lock(mutex_);
  return subscribers_.size();
}

void EventStream::publish(const std::string& name, const nlohmann::json& details) {
  const std::string line = event_line(name, details);
  std::lock_guard lock(mutex_);
  std::vector<int> gone;
  for (auto& [fd, subscriber] : subscribers_) {
    if (subscriber.closing) continue;
    if (subscriber.waiting.size() + line.size() <= kMaxBufferedBytes) {
      subscriber.waiting += line;
    } else {
      // It has fallen behind: what it has not begun to read is dropped, the line it has begun
      // is finished (a reader sees whole lines), and the overflow line ends its stream.
      if (subscriber.at_line_start)
        subscriber.waiting.clear();
      else
        subscriber.waiting.erase(subscriber.waiting.find('\n') + 1);
      subscriber.waiting += event_line(
          "overflow", {{"message", "this subscriber fell more than " + std::to_string(kMaxBufferedBytes) +
                                       " bytes behind; its events end here"}});
      subscriber.closing = true;
      log_line("events: a subscriber fell behind; dropped");
    }
    if (!flush(subscriber)) gone.push_back(fd);
  }
  for (int fd : gone) drop(fd);
}

bool EventStream::flush(Subscriber& subscriber) {
  const int fd = subscriber.socket.get();
  while (!subscriber.waiting.empty()) {
    const ssize_t n =
        ::send(fd, subscriber.waiting.data(), subscriber.waiting.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      subscriber.at_line_start = subscriber.waiting[static_cast<size_t>(n) - 1] == '\n';
      subscriber.waiting.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (subscriber.watching_writable) return true;
      try {
        loop_.watch_writable(fd, true);
      } catch (const std::exception&) {
        return false;
      }
      subscriber.watching_writable = true;
      return true;
    }
    return false;  // the subscriber has gone
  }
  if (subscriber.closing) return false;
  if (subscriber.watching_writable) {
    try {
      loop_.watch_writable(fd, false);
    } catch (const std::exception&) {
      return false;
    }
    subscriber.watching_writable = false;
  }
  return true;
}

void EventStream::serve(int fd) {
  std::lock_guard lock(mutex_);
  auto it = subscribers_.find(fd);
  if (it == subscribers_.end()) return;
  // A subscriber has nothing to say: what it sends is read and dropped (a bounded amount per
  // call, the loop comes back for more); end of file means it has gone.
  char input[1024];
  for (int reads = 0; reads < 16; ++reads) {
    const ssize_t n = ::recv(fd, input, sizeof(input), MSG_DONTWAIT);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    drop(fd);
    return;
  }
  if (!flush(it->second)) drop(fd);
}

void EventStream::drop(int fd) {
  loop_.remove(fd);
  subscribers_.erase(fd);
}

}  // namespace kdom::vmm
