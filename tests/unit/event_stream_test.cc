// Tests of a domain's event stream: events as JSON lines with their time and details, several
// subscribers each getting every event, the subscriber limit, a subscriber that hangs up, and
// one that stops reading: dropped after an overflow line, never slowing the publisher or the
// others; and the `events` op over a real control socket.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "base/error.h"
#include "vmm/control_client.h"
#include "vmm/control_requests.h"
#include "vmm/control_socket.h"
#include "vmm/event_stream.h"
#include "eventually.h"

namespace kdom::vmm {
namespace {

using nlohmann::json;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Both ends of a Unix stream connection: `ours` for the stream, `peer` to read it.
struct SocketPair {
  UniqueFd ours, peer;
  SocketPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    ours.reset(fds[0]);
    peer.reset(fds[1]);
    timeval timeout{5, 0};
    ::setsockopt(peer.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
};

// Reads `fd` until `count` lines have come, or end of file, or the 5 s timeout.
std::vector<std::string> read_lines(int fd, size_t count) {
  std::vector<std::string> lines;
  std::string pending;
  char buffer[4096];
  while (lines.size() < count) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    pending.append(buffer, static_cast<size_t>(n));
    for (size_t newline; (newline = pending.find('\n')) != std::string::npos;) {
      lines.push_back(pending.substr(0, newline));
      pending.erase(0, newline + 1);
    }
  }
  EXPECT_TRUE(pending.empty()) << "a partial line: " << pending.substr(0, 80);
  return lines;
}

class EventStreamTest : public ::testing::Test {
 protected:
  void TearDown() override { loop.stop(); }  // before the stream goes: its handlers use it

  EventLoop loop;
  EventStream stream{loop};
};

TEST_F(EventStreamTest, EventsAreJsonLinesWithTheirTimeAndDetails) {
  SocketPair connection;
  ASSERT_TRUE(stream.subscribe(connection.ours, R"({"ok":true})" "\n"));
  EXPECT_FALSE(connection.ours.valid());  // the stream owns it now
  loop.start();
  const double before = unix_now();
  stream.publish("paused");
  stream.publish("balloon-target-reached", {{"actual_mib", 64}, {"target_mib", 64}});
  stream.publish("stopping", {{"reason", "poweroff"}, {"message", "bad \xff byte"}});
  const auto lines = read_lines(connection.peer.get(), 4);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(json::parse(lines[0]), json({{"ok", true}}));  // the first line comes before any event
  const json paused = json::parse(lines[1]);
  EXPECT_EQ(paused["event"], "paused");
  ASSERT_TRUE(paused["time"].is_number());
  EXPECT_NEAR(paused["time"].get<double>(), before, 5.0);
  const json balloon = json::parse(lines[2]);
  EXPECT_EQ(balloon["event"], "balloon-target-reached");
  EXPECT_EQ(balloon["actual_mib"], 64);
  EXPECT_EQ(balloon["target_mib"], 64);
  const json stopping = json::parse(lines[3]);  // bytes that are not UTF-8 do not cost the event
  EXPECT_EQ(stopping["event"], "stopping");
  EXPECT_EQ(stopping["reason"], "poweroff");
}

TEST_F(EventStreamTest, EverySubscriberGetsEveryEventUpToTheLimit) {
  std::vector<SocketPair> connections(EventStream::kMaxSubscribers + 1);
  for (size_t i = 0; i < EventStream::kMaxSubscribers; ++i) ASSERT_TRUE(stream.subscribe(connections[i].ours));
  SocketPair& one_too_many = connections.back();
  EXPECT_FALSE(stream.subscribe(one_too_many.ours));
  EXPECT_TRUE(one_too_many.ours.valid());  // left to the caller
  EXPECT_EQ(stream.subscriber_count(), EventStream::kMaxSubscribers);
  loop.start();
  for (int i = 0; i < 3; ++i) stream.publish("tick", {{"n", i}});
  for (size_t i = 0; i < EventStream::kMaxSubscribers; ++i) {
    const auto lines = read_lines(connections[i].peer.get(), 3);
    ASSERT_EQ(lines.size(), 3u) << "subscriber " << i;
    for (int n = 0; n < 3; ++n) EXPECT_EQ(json::parse(lines[static_cast<size_t>(n)])["n"], n);
  }
}

TEST_F(EventStreamTest, ASubscriberThatHangsUpIsDropped) {
  SocketPair stays, leaves;
  ASSERT_TRUE(stream.subscribe(stays.ours));
  ASSERT_TRUE(stream.subscribe(leaves.ours));
  loop.start();
  leaves.peer.reset();
  EXPECT_TRUE(eventually([&] { return stream.subscriber_count() == 1; }));
  stream.publish("unpaused");
  const auto lines = read_lines(stays.peer.get(), 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["event"], "unpaused");
}

TEST_F(EventStreamTest, ASubscriberThatStopsReadingIsToldAndDroppedWithoutSlowingAnyone) {
  SocketPair stalled, reader;
  const int small = 4096;  // the kernel takes little of the stalled one's backlog
  ASSERT_EQ(::setsockopt(stalled.ours.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  ASSERT_TRUE(stream.subscribe(stalled.ours));
  ASSERT_TRUE(stream.subscribe(reader.ours));
  loop.start();
  // Far more than the stalled subscriber's buffer and socket hold; the reader keeps up, a
  // batch at a time.
  const std::string padding(40, 'p');
  constexpr int kEvents = 1500, kBatch = 100;
  std::chrono::steady_clock::duration publishing{};
  for (int batch = 0; batch < kEvents / kBatch; ++batch) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = batch * kBatch; i < (batch + 1) * kBatch; ++i) stream.publish("tick", {{"n", i}, {"padding", padding}});
    publishing += std::chrono::steady_clock::now() - start;
    const auto lines = read_lines(reader.peer.get(), kBatch);
    ASSERT_EQ(lines.size(), static_cast<size_t>(kBatch));
    for (int i = 0; i < kBatch; ++i) ASSERT_EQ(json::parse(lines[static_cast<size_t>(i)])["n"], batch * kBatch + i);
  }
  EXPECT_LT(publishing, std::chrono::seconds(2)) << "publishing waited for a subscriber";

  // The stalled one now reads: the events it was sent in order, whole lines, then the overflow
  // line, then the end of the stream.
  const auto behind = read_lines(stalled.peer.get(), kEvents + 1);
  ASSERT_GE(behind.size(), 2u);
  ASSERT_LT(behind.size(), static_cast<size_t>(kEvents));
  for (size_t i = 0; i + 1 < behind.size(); ++i) ASSERT_EQ(json::parse(behind[i])["n"], i);
  const json last = json::parse(behind.back());
  EXPECT_EQ(last["event"], "overflow");
  EXPECT_NE(last["message"].get<std::string>().find("fell more than"), std::string::npos);
  char byte;
  EXPECT_EQ(::recv(stalled.peer.get(), &byte, 1, 0), 0) << "the stream did not end after the overflow line";
  EXPECT_TRUE(eventually([&] { return stream.subscriber_count() == 1; }));
  stream.publish("after");
  const auto after = read_lines(reader.peer.get(), 1);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(json::parse(after[0])["event"], "after");
}

TEST(EventStreamEndTest, SubscribersGetTheirLastLinesAndTheEndOfTheStream) {
  EventLoop loop;  // never started: the stream sends at once what the socket takes
  SocketPair connection;
  {
    EventStream stream(loop);
    ASSERT_TRUE(stream.subscribe(connection.ours));
    stream.publish("stopping", {{"reason", "reboot"}});
  }
  const auto lines = read_lines(connection.peer.get(), 2);  // up to the end of the stream
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["reason"], "reboot");
}

class EventsOpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/kdom-events-test-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir = name;
    path = (dir / "ctl").string();
  }
  void TearDown() override {
    loop.stop();
    control.reset();
    std::filesystem::remove_all(dir);
  }

  std::filesystem::path dir;
  std::string path;
  EventLoop loop;
  EventStream stream{loop};
  ControlRequests requests{nullptr, 512, nullptr};
  std::unique_ptr<ControlSocket> control;
};

TEST_F(EventsOpTest, TheEventsOpTurnsAControlConnectionIntoAStream) {
  control = std::make_unique<ControlSocket>(path, loop, requests, &stream);
  loop.start();
  UniqueFd events = subscribe_to_events(path);
  EXPECT_TRUE(eventually([&] { return stream.subscriber_count() == 1; }));
  stream.publish("paused");
  timeval timeout{5, 0};
  ::setsockopt(events.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const auto lines = read_lines(events.get(), 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["event"], "paused");
  // The socket still answers requests on other connections.
  EXPECT_THROW(control_request(path, {{"op", "balloon-stats"}}), Error);  // no balloon: an error reply
  // Full: the next subscriber is refused and its connection goes on as a control one.
  std::vector<UniqueFd> more;
  for (size_t i = 1; i < EventStream::kMaxSubscribers; ++i) more.push_back(subscribe_to_events(path));
  try {
    subscribe_to_events(path);
    ADD_FAILURE() << "a subscriber beyond the limit was taken";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("too many event subscribers"), std::string::npos) << error.what();
  }
}

TEST(EventsOpWithoutStreamTest, IsAnErrorReply) {
  ControlRequests requests(nullptr, 512, nullptr);
  const json reply = json::parse(requests.handle_line(R"({"op":"events"})"));
  EXPECT_EQ(reply["ok"], false);
  EXPECT_NE(reply["error"].get<std::string>().find("stream"), std::string::npos);
}

}  // namespace
}  // namespace kdom::vmm
