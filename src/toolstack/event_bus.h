// EventBus: what happens to the host's domains (created, running, paused, shut down, crashed,
// destroyed, renamed, balloon target reached...), handed to every reader of GET /v1/events.
// Publishing never waits for a reader: each has a bounded queue, and one that falls behind is
// told ("overflow", its last event) and dropped, so a slow or stuck client holds up neither
// the daemon nor the other readers.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace kdom::toolstack {

class EventBus {
 public:
  static constexpr size_t kQueueLimit = 4096;
  using Filter = std::function<bool(const nlohmann::json& event)>;

  class Subscription {
   public:
    enum class Next { kEvent, kTimeout, kEnded };
    // Waits up to `timeout` for the next event; kEnded once the bus closed or this reader was
    // dropped (after its last event, "overflow", has been read).
    Next next(nlohmann::json& event, std::chrono::milliseconds timeout);

   private:
    friend class EventBus;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<nlohmann::json> queue_;
    bool ended_ = false;
    Filter wanted_;
  };

  explicit EventBus(size_t queue_limit = kQueueLimit) : queue_limit_(queue_limit) {}
  ~EventBus() { close(); }
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  // A new reader, of the events `wanted` accepts (all when empty): others take no room in its
  // queue.
  std::shared_ptr<Subscription> subscribe(Filter wanted = {});
  void unsubscribe(const std::shared_ptr<Subscription>& subscription);
  // Stamps `fields` with "seq" (from 1, never reused while the daemon lives), "time" (RFC 3339,
  // UTC, milliseconds) and "event" = `type`, and queues it for every reader.
  void publish(const std::string& type, nlohmann::json fields);
  // Ends every reader (the daemon stops).
  void close();
  size_t reader_count();

 private:
  const size_t queue_limit_;
  std::mutex mutex_;
  uint64_t next_seq_ = 1;
  bool closed_ = false;
  std::set<std::shared_ptr<Subscription>> subscriptions_;
};

// The current time as RFC 3339 in UTC with milliseconds ("2026-12-06T09:30:01.250Z").
std::string utc_timestamp();

}  // namespace kdom::toolstack
