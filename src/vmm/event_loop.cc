// epoll-based event loop.
#include "vmm/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

#include "base/error.h"
#include "base/eventfd.h"
#include "base/log.h"

namespace kdom::vmm {

EventLoop::EventLoop()
    : epoll_(check_syscall(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
      stop_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = stop_.get();
  check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_.get(), &event), "epoll_ctl");
}

EventLoop::~EventLoop() { stop(); }

void EventLoop::add(int fd, Handler handler) {
  {
    std::lock_guard lock(mutex_);
    handlers_[fd] = std::make_shared<const Handler>(std::move(handler));
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = fd;
  check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event), "epoll_ctl");
}

void EventLoop::remove(int fd) {
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  std::lock_guard lock(mutex_);
  handlers_.erase(fd);
}

void EventLoop::watch_writable(int fd, bool writable) {
  epoll_event event{};
  event.events = EPOLLIN | (writable ? EPOLLOUT : 0u);
  event.data.fd = fd;
  check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event), "epoll_ctl");
}

void EventLoop::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void EventLoop::stop() {
  if (!thread_.joinable()) return;
  signal_eventfd(stop_.get());
  thread_.join();
}

void EventLoop::run() {
  epoll_event events[16];
  for (;;) {
    int count = epoll_wait(epoll_.get(), events, 16, -1);
    if (count < 0) {
      if (errno == EINTR) continue;
      log_line(std::string("event loop: epoll_wait: ") + std::strerror(errno));
      return;
    }
    for (int i = 0; i < count; ++i) {
      int fd = events[i].data.fd;
      if (fd == stop_.get()) return;
      std::shared_ptr<const Handler> handler;
      {
        std::lock_guard lock(mutex_);
        auto it = handlers_.find(fd);
        if (it == handlers_.end()) continue;
        handler = it->second;
      }
      try {
        (*handler)();
      } catch (const std::exception& error) {
        log_line("event loop: the handler of fd " + std::to_string(fd) + " failed (" + error.what() +
                 "); no longer watching that fd");
        remove(fd);
      }
    }
  }
}

}  // namespace kdom::vmm
