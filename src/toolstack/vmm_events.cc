// The VMMs' event channels, read in one thread.
#include "toolstack/vmm_events.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/eventfd.h"
#include "base/log.h"
#include "vmm/control_client.h"

namespace kdom::toolstack {

namespace {
constexpr uint64_t kWakeKey = UINT64_MAX;
}  // namespace

VmmEvents::VmmEvents(Sink sink)
    : sink_(std::move(sink)),
      epoll_(check_syscall(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
      wake_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeKey;
  check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &event), "epoll_ctl");
  reader_ = std::thread([this] { run(); });
}

VmmEvents::~VmmEvents() {
  signal_eventfd(wake_.get());
  reader_.join();
}

void VmmEvents::subscribe(uint32_t domain_id, const std::string& control_path) {
  UniqueFd socket = vmm::subscribe_to_events(control_path);
  const int flags = ::fcntl(socket.get(), F_GETFL);
  check_syscall(flags < 0 ? -1 : ::fcntl(socket.get(), F_SETFL, flags | O_NONBLOCK), "fcntl");
  std::lock_guard lock(mutex_);
  end(domain_id);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = domain_id;
  check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, socket.get(), &event), "epoll_ctl");
  subscriptions_[domain_id].socket = std::move(socket);
}

void VmmEvents::finish(uint32_t domain_id) {
  std::lock_guard lock(mutex_);
  auto it = subscriptions_.find(domain_id);
  if (it == subscriptions_.end()) return;
  read_and_deliver(domain_id, it->second);
  end(domain_id);
}

bool VmmEvents::subscribed(uint32_t domain_id) {
  std::lock_guard lock(mutex_);
  return subscriptions_.count(domain_id) != 0;
}

void VmmEvents::end(uint32_t domain_id) {
  auto it = subscriptions_.find(domain_id);
  if (it == subscriptions_.end()) return;
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.socket.get(), nullptr);
  subscriptions_.erase(it);
}

bool VmmEvents::read_and_deliver(uint32_t domain_id, Subscription& subscription) {
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(subscription.socket.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;
    subscription.pending.append(buffer, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t newline; (newline = subscription.pending.find('\n', start)) != std::string::npos; start = newline + 1) {
      const nlohmann::json event =
          nlohmann::json::parse(subscription.pending.begin() + static_cast<std::ptrdiff_t>(start),
                                subscription.pending.begin() + static_cast<std::ptrdiff_t>(newline), nullptr,
                                /*allow_exceptions=*/false);
      if (!event.is_object()) {
        log_line("domain " + std::to_string(domain_id) + ": its VMM sent an event that is not a JSON object; ignored");
        continue;
      }
      try {
        sink_(domain_id, event);
      } catch (const std::exception& error) {
        log_line("domain " + std::to_string(domain_id) + ": handling its VMM's event failed: " + error.what());
      }
    }
    subscription.pending.erase(0, start);
    if (subscription.pending.size() > kMaxLineBytes) {
      log_line("domain " + std::to_string(domain_id) + ": its VMM sent an event line over " +
               std::to_string(kMaxLineBytes) + " bytes; no longer listening to its events");
      return false;
    }
  }
}

void VmmEvents::run() {
  for (;;) {
    epoll_event events[16];
    const int count = epoll_wait(epoll_.get(), events, 16, -1);
    if (count < 0) {
      if (errno == EINTR) continue;
      log_line(std::string("vmm events: epoll_wait failed: ") + std::strerror(errno));
      return;
    }
    for (int i = 0; i < count; ++i) {
      if (events[i].data.u64 == kWakeKey) return;
      const auto domain_id = static_cast<uint32_t>(events[i].data.u64);
      std::lock_guard lock(mutex_);
      auto it = subscriptions_.find(domain_id);
      // Gone, or replaced since (the new socket then has nothing to read, or its own event).
      if (it == subscriptions_.end()) continue;
      if (!read_and_deliver(domain_id, it->second)) end(domain_id);
    }
  }
}

}  // namespace kdom::toolstack
