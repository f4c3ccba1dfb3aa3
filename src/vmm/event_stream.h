// EventStream: a running domain's asynchronous events (paused, balloon target reached,
// stopping...) sent to whoever subscribed on the control socket (`{"op":"events"}`), one JSON
// line each, so a supervisor learns what happened without asking. Events come from any thread
// (vCPUs, the device loop, the main thread); a subscriber never slows them: every write is
// non-blocking, what the socket does not take waits in a bounded buffer flushed from the
// device loop, and a subscriber whose buffer would pass the bound gets a last "overflow" line
// (once it reads again) and is closed. Events are not kept for later subscribers.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "vmm/event_loop.h"

namespace kdom::vmm {

class EventStream {
 public:
  // At most this many subscribers at once, and this many bytes waiting for one of them.
  static constexpr size_t kMaxSubscribers = 8;
  static constexpr size_t kMaxBufferedBytes = 64 * 1024;

  // `loop` serves the subscribers' sockets (their output once it backed up, their hang-up);
  // it must outlive this object and be stopped before it is destroyed (or never started).
  explicit EventStream(EventLoop& loop);
  // Sends what each subscriber still waits for as far as its socket takes it, then closes it.
  ~EventStream();
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  // Makes the connected stream socket `socket` a subscriber (and non-blocking), sent
  // `first_line` before any event; false, with `socket` left to the caller, when there are
  // kMaxSubscribers already.
  bool subscribe(UniqueFd& socket, const std::string& first_line = "");
  // From any thread, never blocking: sends {"event":name,"time":unix seconds,...details} to
  // every subscriber. `details` is null or an object.
  void publish(const std::string& name, const nlohmann::json& details = nullptr);
  size_t subscriber_count() const;

 private:
  struct Subscriber {
    UniqueFd socket;
    std::string waiting;        // bytes not yet sent (whole lines, the first maybe begun)
    bool at_line_start = true;  // the bytes sent so far end with a whole line
    bool closing = false;       // fell behind: only its begun line and the overflow line remain
    bool watching_writable = false;
  };
  // Sends what `subscriber` waits for as far as its socket takes it; false when it is to be
  // dropped (gone, or it was closing and all is sent). Called with mutex_ held.
  bool flush(Subscriber& subscriber);
  // In the loop's thread: the subscriber's socket can be written, has input or hung up.
  void serve(int fd);
  void drop(int fd);  // with mutex_ held

  EventLoop& loop_;
  mutable std::mutex mutex_;
  std::map<int, Subscriber> subscribers_;
};

}  // namespace kdom::vmm
