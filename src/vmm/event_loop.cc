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
      stop_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")),
      calls_fd_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")) {
  for (int fd : {stop_.get(), calls_fd_.get()}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event), "epoll_ctl");
  }
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
  if (thread_.joinable()) return;
  std::lock_guard lock(call_mutex_);
  thread_ = std::thread([this] { run(); });
  loop_thread_ = thread_.get_id();
}

void EventLoop::stop() {
  if (!thread_.joinable()) return;
  signal_eventfd(stop_.get());
  thread_.join();
  std::lock_guard lock(call_mutex_);
  loop_thread_ = {};
  for (Call* call : calls_) {
    call->error = std::make_exception_ptr(Error("the domain's event loop has stopped"));
    call->done = true;
  }
  calls_.clear();
  call_done_.notify_all();
}

void EventLoop::call(const std::function<void()>& task) {
  Call call{&task, nullptr};
  {
    std::unique_lock lock(call_mutex_);
    if (loop_thread_ == std::thread::id() || loop_thread_ == std::this_thread::get_id()) {
      lock.unlock();
      task();
      return;
    }
    calls_.push_back(&call);
    signal_eventfd(calls_fd_.get());
    call_done_.wait(lock, [&] { return call.done; });
  }
  if (call.error) std::rethrow_exception(call.error);
}

void EventLoop::run_calls() {
  drain_eventfd(calls_fd_.get());
  std::unique_lock lock(call_mutex_);
  while (!calls_.empty()) {
    Call* call = calls_.front();
    calls_.pop_front();
    lock.unlock();
    try {
      (*call->task)();
    } catch (...) {
      call->error = std::current_exception();
    }
    lock.lock();
    call->done = true;
    call_done_.notify_all();
  }
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
      if (fd == calls_fd_.get()) {
        run_calls();
        continue;
      }
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
