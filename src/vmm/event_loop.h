// EventLoop: a thread that waits on file descriptors (ioeventfds of virtio queues, backend
// sockets) and runs their handlers, so device work happens off the vCPU threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
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

  // Runs `task` in the loop's thread, between handlers, and returns once it has run; what it
  // throws is thrown here. For another thread (a live migration's) that must touch what only
  // the loop's thread touches (the devices, the control requests' state). From the loop's own
  // thread, and while the loop is not running, `task` runs at once in the calling thread;
  // a call the loop's stop() leaves unrun throws Error.
  void call(const std::function<void()>& task);

 private:
  struct Call {
    const std::function<void()>* task;
    std::exception_ptr error;
    bool done = false;
  };
  void run();
  void run_calls();

  UniqueFd epoll_;
  UniqueFd stop_;
  std::mutex mutex_;
  // Shared so the loop can run a handler outside the lock without copying it per event.
  std::unordered_map<int, std::shared_ptr<const Handler>> handlers_;
  std::thread thread_;
  UniqueFd calls_fd_;  // eventfd: a call is queued
  std::mutex call_mutex_;
  std::condition_variable call_done_;
  std::deque<Call*> calls_;             // under call_mutex_
  std::thread::id loop_thread_;         // under call_mutex_; empty while not running
};

}  // namespace kdom::vmm
