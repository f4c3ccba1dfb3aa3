// EventBus: one lock for the readers' set and the sequence, one per reader for its queue.
#include "toolstack/event_bus.h"

#include <ctime>

namespace kdom::toolstack {

using nlohmann::json;

std::string utc_timestamp() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char text[40];
  const size_t length = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + length, sizeof(text) - length, ".%03ldZ", now.tv_nsec / 1000000);
  return text;
}

EventBus::Subscription::Next EventBus::Subscription::next(json& event, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!ready_.wait_for(lock, timeout, [this] { return !queue_.empty() || ended_; })) return Next::kTimeout;
  if (queue_.empty()) return Next::kEnded;
  event = std::move(queue_.front());
  queue_.pop_front();
  return Next::kEvent;
}

std::shared_ptr<EventBus::Subscription> EventBus::subscribe(Filter wanted) {
  auto subscription = std::make_shared<Subscription>();
  subscription->wanted_ = std::move(wanted);
  std::lock_guard lock(mutex_);
  if (closed_)
    subscription->ended_ = true;
  else
    subscriptions_.insert(subscription);
  return subscription;
}

void EventBus::unsubscribe(const std::shared_ptr<Subscription>& subscription) {
  std::lock_guard lock(mutex_);
  subscriptions_.erase(subscription);
}

void EventBus::publish(const std::string& type, json fields) {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  json event = {{"seq", next_seq_++}, {"time", utc_timestamp()}, {"event", type}};
  event.update(fields);
  for (auto it = subscriptions_.begin(); it != subscriptions_.end();) {
    Subscription& reader = **it;
    if (reader.wanted_ && !reader.wanted_(event)) {
      ++it;
      continue;
    }
    std::lock_guard reader_lock(reader.mutex_);
    if (reader.queue_.size() < queue_limit_) {
      reader.queue_.push_back(event);
      reader.ready_.notify_one();
      ++it;
      continue;
    }
    // Fallen behind: it reads what it has, then why it ends.
    reader.queue_.push_back({{"seq", event["seq"]},
                             {"time", event["time"]},
                             {"event", "overflow"},
                             {"message", "this reader fell " + std::to_string(queue_limit_) +
                                             " events behind and was dropped; events from seq " +
                                             event["seq"].dump() + " on were not sent to it"}});
    reader.ended_ = true;
    reader.ready_.notify_one();
    it = subscriptions_.erase(it);
  }
}

void EventBus::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  for (const auto& subscription : subscriptions_) {
    std::lock_guard reader_lock(subscription->mutex_);
    subscription->ended_ = true;
    subscription->ready_.notify_one();
  }
  subscriptions_.clear();
}

size_t EventBus::reader_count() {
  std::lock_guard lock(mutex_);
  return subscriptions_.size();
}

}  // namespace kdom::toolstack
