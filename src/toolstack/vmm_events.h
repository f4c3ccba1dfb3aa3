// VmmEvents: kdomd's end of its VMMs' event channels (the control socket's `events` op, see
// vmm/control_requests.h): one subscription per running VMM, all read by one thread, every
// event line handed with its domain's id to one sink, the supervisor's single place for domain
// events. A VMM's events reach the sink in the order it sent them, one at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"

namespace kdom::toolstack {

class VmmEvents {
 public:
  // The sink runs in the reading thread (or in finish()'s caller) with this object's lock held:
  // it must not call back into this object, nor wait for anything that does. What it throws is
  // logged.
  using Sink = std::function<void(uint32_t domain_id, const nlohmann::json& event)>;
  // A longer line ends that VMM's subscription (a VMM sends short ones).
  static constexpr size_t kMaxLineBytes = 64 * 1024;

  explicit VmmEvents(Sink sink);
  ~VmmEvents();
  VmmEvents(const VmmEvents&) = delete;
  VmmEvents& operator=(const VmmEvents&) = delete;

  // Subscribes to the events of domain `domain_id`'s VMM through its control socket, in place
  // of an earlier subscription of that domain. Throws Error when the VMM does not answer.
  void subscribe(uint32_t domain_id, const std::string& control_path);
  // Hands what the VMM sent and nobody has read yet to the sink, then ends the subscription
  // (none: nothing happens). For a VMM that has exited: everything it sent is there by then.
  void finish(uint32_t domain_id);
  bool subscribed(uint32_t domain_id);

 private:
  struct Subscription {
    UniqueFd socket;
    std::string pending;  // bytes after the last whole line
  };
  // Reads what has come and hands its whole lines to the sink; false when the stream has
  // ended (the VMM closed it, or broke it). With mutex_ held.
  bool read_and_deliver(uint32_t domain_id, Subscription& subscription);
  void end(uint32_t domain_id);  // with mutex_ held
  void run();

  Sink sink_;
  std::mutex mutex_;
  std::map<uint32_t, Subscription> subscriptions_;
  UniqueFd epoll_;
  UniqueFd wake_;  // ends run()
  std::thread reader_;
};

}  // namespace kdom::toolstack
