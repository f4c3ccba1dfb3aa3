// Tests of the daemon's event bus: every reader gets every event in order, stamped; a reader
// that falls behind is told and dropped while the others and the publisher go on; closing ends
// every reader; a late subscriber sees only what comes after.
#include "toolstack/event_bus.h"

#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <thread>

namespace kdom::toolstack {
namespace {

using nlohmann::json;
using Next = EventBus::Subscription::Next;
constexpr std::chrono::milliseconds kNoWait{0};

TEST(EventBus, EveryReaderGetsEveryEventInOrderStamped) {
  EventBus bus;
  auto first = bus.subscribe(), second = bus.subscribe();
  EXPECT_EQ(bus.reader_count(), 2u);
  bus.publish("created", {{"id", 1}, {"name", "web"}});
  bus.publish("running", {{"id", 1}, {"name", "web"}});
  for (auto* reader : {&first, &second}) {
    json event;
    ASSERT_EQ((*reader)->next(event, kNoWait), Next::kEvent);
    EXPECT_EQ(event["event"], "created");
    EXPECT_EQ(event["seq"], 1);
    EXPECT_EQ(event["name"], "web");
    EXPECT_TRUE(std::regex_match(event["time"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
        << event["time"];
    ASSERT_EQ((*reader)->next(event, kNoWait), Next::kEvent);
    EXPECT_EQ(event["event"], "running");
    EXPECT_EQ(event["seq"], 2);
    EXPECT_EQ((*reader)->next(event, kNoWait), Next::kTimeout);
  }
  auto late = bus.subscribe();
  json event;
  EXPECT_EQ(late->next(event, kNoWait), Next::kTimeout) << "a new reader gets no old events";
  bus.unsubscribe(first);
  EXPECT_EQ(bus.reader_count(), 2u);
}

TEST(EventBus, AReaderThatFallsBehindIsToldAndDroppedAndTheOthersGoOn) {
  EventBus bus(8);
  auto stuck = bus.subscribe(), reading = bus.subscribe();
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    bus.publish("paused", {{"id", i}});
    json event;
    ASSERT_EQ(reading->next(event, kNoWait), Next::kEvent);
    EXPECT_EQ(event["id"], i);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2)) << "publishing waited for a reader";
  EXPECT_EQ(bus.reader_count(), 1u);
  json event;
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(stuck->next(event, kNoWait), Next::kEvent);
    EXPECT_EQ(event["id"], i);
  }
  ASSERT_EQ(stuck->next(event, kNoWait), Next::kEvent);
  EXPECT_EQ(event["event"], "overflow");
  EXPECT_EQ(event["seq"], 9) << "the first event it missed";
  EXPECT_NE(event["message"].get<std::string>().find("fell 8 events behind"), std::string::npos);
  EXPECT_EQ(stuck->next(event, kNoWait), Next::kEnded);
}

TEST(EventBus, CloseEndsAWaitingReaderAndLaterSubscribers) {
  EventBus bus;
  auto reader = bus.subscribe();
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    bus.close();
  });
  json event;
  EXPECT_EQ(reader->next(event, std::chrono::seconds(10)), Next::kEnded);
  closer.join();
  EXPECT_EQ(bus.subscribe()->next(event, kNoWait), Next::kEnded);
  bus.publish("created", {});  // nobody to tell, and no harm done
  EXPECT_EQ(bus.reader_count(), 0u);
}

}  // namespace
}  // namespace kdom::toolstack
