// EventLoop: a thread that waits on file descriptors (ioeventfds of virtio queues, backend
// sockets) and runs their handlers, so device work happens off the vCPU threads.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "base/unique_fd.h"

namespace kdom::vmm {

class EventLoop {
 public:
  using Handler = std::function<void()>;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs `handler` in the loop's thread whenever `fd` is readable. The fd stays owned by the
  // caller and must outlive its registration. May be called before or after start().
  // A handler that throws is logged (one line naming its fd and the error) and its fd is
  // dropped from the loop: one broken device or client must not end the whole domain.
  void add(int fd, Handler handler);
  void remove(int fd);
  // Whether the handler of `fd` (added) also runs when `fd` is writable: for a socket whose
  // output backed up, until it has drained.
  void watch_writable(int fd, bool writable);
  void start();
  // Stops and joins the thread; handlers are not called afterwards.
  void stop();

 private:
  void run();

  UniqueFd epoll_;
  UniqueFd stop_;
  std::mutex mutex_;
  // Shared so the loop can run a handler outside the lock without copying it per event.
  std::unordered_map<int, std::shared_ptr<const Handler>> handlers_;
  std::thread thread_;
};

}  // namespace kdom::vmm
