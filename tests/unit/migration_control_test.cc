// Tests of migrate-send and migrate-cancel on a real control socket (a real EventLoop,
// ControlSocket and MigrationRunner; the domain's side a fake): the stream's fd passed with
// the request reaches the migration and is closed after it, the reply comes on the request's
// connection when the migration ends while the socket serves other requests meanwhile, one
// migration at a time, a cancel ends a write blocked on a peer that does not read, and an fd
// sent with any other request, or a request with no fd, is handled as it should be. Also
// EventLoop::call, which the migration uses to reach the loop's thread, and MigrationRate.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "base/error.h"
#include "base/eventfd.h"
#include "eventually.h"
#include "snapshot/stream.h"
#include "vmm/control_client.h"
#include "vmm/control_requests.h"
#include "vmm/control_socket.h"
#include "vmm/event_loop.h"
#include "vmm/migration_rate.h"
#include "vmm/migration_runner.h"

namespace kdom::vmm {
namespace {

using nlohmann::json;

// Whether `fd`'s other end is closed everywhere: a read of the pipe ends at once.
bool reads_end_of_file(int fd) {
  char byte;
  return ::read(fd, &byte, 1) == 0;
}

UniqueFd pipe_end(int (&fds)[2], int which) {
  UniqueFd end(fds[which]);
  fds[which] = -1;
  return end;
}

// The domain's side, faked: a migration writes "stream\n" to its fd and then waits for
// release() or a cancel; a cancel shuts the stream down as Domain::migrate_cancel does.
class FakeDomain {
 public:
  DomainActions actions() {
    DomainActions actions;
    actions.status = [] { return DomainStatus{}; };
    actions.migrate_send = [this](int fd, const MigrationOptions& options) { return migrate(fd, options); };
    actions.migrate_cancel = [this] {
      std::lock_guard lock(mutex_);
      if (fd_ < 0) return false;
      cancelled_ = true;
      ::shutdown(fd_, SHUT_RDWR);
      changed_.notify_all();
      return true;
    };
    return actions;
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }
  // With it, a migration writes without end (a peer that does not read blocks it).
  bool flood = false;
  MigrationOptions options;  // the last migration's
  std::atomic<int> started{0};

 private:
  json migrate(int fd, const MigrationOptions& given) {
    {
      std::lock_guard lock(mutex_);
      fd_ = fd;
      options = given;
    }
    ++started;
    auto done = [&] {
      std::lock_guard lock(mutex_);
      fd_ = -1;
    };
    try {
      snapshot::StreamWriter writer(fd, "migration stream");
      if (flood) {
        std::vector<uint8_t> body(1 << 20);
        for (;;) writer.write(snapshot::RecordType::kMemory, body);
      }
      static constexpr char kLine[] = "stream\n";
      if (::write(fd, kLine, sizeof(kLine) - 1) != sizeof(kLine) - 1) throw Error("write failed");
    } catch (const std::exception& error) {
      const bool cancelled = [&] {
        std::lock_guard lock(mutex_);
        return cancelled_;
      }();
      done();
      throw Error(cancelled ? "cancelled" : error.what());
    }
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return released_ || cancelled_; });
    fd_ = -1;
    if (cancelled_) throw Error("cancelled");
    return {{"rounds", 3}, {"sent_bytes", 23}};
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  int fd_ = -1;
  bool released_ = false;
  bool cancelled_ = false;
};

class MigrationControlTest : public ::testing::Test {
 protected:
  std::filesystem::path dir;
  std::string path;
  FakeDomain domain;
  EventLoop events;
  ControlRequests requests{nullptr, 1024, domain.actions()};
  MigrationRunner runner{[this](const json& request, int fd) { return requests.migrate_send(request, fd); }};
  std::unique_ptr<ControlSocket> control;

  void SetUp() override {
    char name[] = "/tmp/kdom-migration-test-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir = name;
    path = (dir / "ctl").string();
    control = std::make_unique<ControlSocket>(path, events, requests, nullptr, &runner);
    events.start();
  }
  void TearDown() override {
    domain.release();
    runner.close();
    events.stop();
    control.reset();
    std::filesystem::remove_all(dir);
  }
  // migrate-send with `fd` in another thread; its reply (or the error it threw) when it comes.
  std::future<json> migrate_async(json request, int fd, int reply_seconds = 10) {
    return std::async(std::launch::async, [this, request, fd, reply_seconds] {
      try {
        return control_request_with_fd(path, request, fd, reply_seconds);
      } catch (const std::exception& error) {
        return json{{"ok", false}, {"error", error.what()}};
      }
    });
  }
};

TEST_F(MigrationControlTest, TheStreamFdReachesTheMigrationAndTheReplyComesWhenItEnds) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  UniqueFd read_end = pipe_end(fds, 0), write_end = pipe_end(fds, 1);
  auto reply = migrate_async({{"op", "migrate-send"},
                              {"downtime_ms", 7},
                              {"max_rounds", 3},
                              {"max_bandwidth_mib", 5},
                              {"auto_converge", false},
                              {"toolstack", {{"name", "web"}}}},
                             write_end.get());
  ASSERT_TRUE(eventually([&] { return domain.started == 1; }));
  // The migration runs in its own thread: the socket answers meanwhile.
  EXPECT_EQ(control_request(path, {{"op", "status"}})["state"], "running");
  EXPECT_TRUE(runner.running());
  domain.release();
  const json result = reply.get();
  EXPECT_EQ(result["ok"], true) << result.dump();
  EXPECT_EQ(result["rounds"], 3);
  EXPECT_EQ(domain.options.downtime_ms, 7u);
  EXPECT_EQ(domain.options.max_rounds, 3u);
  EXPECT_EQ(domain.options.max_bandwidth_mib, 5u);
  EXPECT_FALSE(domain.options.auto_converge);
  EXPECT_EQ(domain.options.toolstack, (json{{"name", "web"}}));
  // What the migration wrote came through the passed fd, and its copy is closed: with ours
  // closed too, the pipe ends.
  write_end.reset();
  char text[64] = {};
  ASSERT_EQ(::read(read_end.get(), text, 16), 16);  // the stream's header
  EXPECT_EQ(std::string(text, 8), "KDOMSNAP");
  ASSERT_EQ(::read(read_end.get(), text, 7), 7);
  EXPECT_EQ(std::string(text, 7), "stream\n");
  EXPECT_TRUE(reads_end_of_file(read_end.get()));
  EXPECT_TRUE(eventually([&] { return !runner.running(); }));
}

TEST_F(MigrationControlTest, OneMigrationAtATimeAndACancelEndsIt) {
  int first[2], second[2];
  ASSERT_EQ(::pipe(first), 0);
  ASSERT_EQ(::pipe(second), 0);
  UniqueFd first_read = pipe_end(first, 0), first_write = pipe_end(first, 1);
  UniqueFd second_read = pipe_end(second, 0), second_write = pipe_end(second, 1);
  auto reply = migrate_async({{"op", "migrate-send"}}, first_write.get());
  ASSERT_TRUE(eventually([&] { return domain.started == 1; }));
  EXPECT_EQ(domain.options.downtime_ms, 50u);  // the defaults
  EXPECT_EQ(domain.options.max_rounds, 30u);
  EXPECT_EQ(domain.options.max_bandwidth_mib, 0u);
  EXPECT_TRUE(domain.options.auto_converge);
  try {
    control_request_with_fd(path, {{"op", "migrate-send"}}, second_write.get(), 5);
    ADD_FAILURE() << "a second migration was taken";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("running already"), std::string::npos) << error.what();
  }
  // The refused one's fd is not kept.
  second_write.reset();
  EXPECT_TRUE(eventually([&] { return reads_end_of_file(second_read.get()); }));
  EXPECT_EQ(control_request(path, {{"op", "migrate-cancel"}})["cancelled"], true);
  const json result = reply.get();
  EXPECT_EQ(result["ok"], false);
  EXPECT_EQ(result["error"], "migrate-send: cancelled");
  EXPECT_TRUE(eventually([&] { return !runner.running(); }));
  EXPECT_EQ(control_request(path, {{"op", "migrate-cancel"}})["cancelled"], false);
  EXPECT_EQ(domain.started, 1);
}

// A peer that takes nothing blocks the migration's write; a cancel makes it return at once.
TEST_F(MigrationControlTest, ACancelEndsAWriteBlockedOnAPeerThatDoesNotRead) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd near = pipe_end(pair, 0), far = pipe_end(pair, 1);
  domain.flood = true;
  auto reply = migrate_async({{"op", "migrate-send"}}, far.get());
  ASSERT_TRUE(eventually([&] { return domain.started == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the socket's buffer fills
  EXPECT_EQ(reply.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  const auto cancelled_at = std::chrono::steady_clock::now();
  EXPECT_EQ(control_request(path, {{"op", "migrate-cancel"}})["cancelled"], true);
  ASSERT_EQ(reply.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(2));
  EXPECT_EQ(reply.get()["error"], "migrate-send: cancelled");
}

TEST_F(MigrationControlTest, RequestsWithoutAnFdOrWithBadLimitsAreRefused) {
  try {
    control_request(path, {{"op", "migrate-send"}});
    ADD_FAILURE() << "a migration without a stream was taken";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no fd came with the request"), std::string::npos) << error.what();
  }
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  UniqueFd read_end = pipe_end(fds, 0), write_end = pipe_end(fds, 1);
  for (const json& request : {json{{"op", "migrate-send"}, {"downtime_ms", -1}},
                              json{{"op", "migrate-send"}, {"max_rounds", 0}},
                              json{{"op", "migrate-send"}, {"max_rounds", 1001}},
                              json{{"op", "migrate-send"}, {"max_bandwidth_mib", "fast"}},
                              json{{"op", "migrate-send"}, {"auto_converge", 1}},
                              json{{"op", "migrate-send"}, {"toolstack", 3}}}) {
    try {
      control_request_with_fd(path, request, write_end.get(), 5);
      ADD_FAILURE() << "taken: " << request.dump();
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("migrate-send: \""), std::string::npos) << error.what();
    }
  }
  EXPECT_EQ(domain.started, 0);
  // Straight to ControlRequests (no socket, so no fd): refused.
  EXPECT_EQ(requests.handle({{"op", "migrate-send"}})["ok"], false);
}

// An fd that comes with any other request is closed, and the request served as usual.
TEST_F(MigrationControlTest, AnFdWithAnotherRequestIsClosed) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  UniqueFd read_end = pipe_end(fds, 0), write_end = pipe_end(fds, 1);
  EXPECT_EQ(control_request_with_fd(path, {{"op", "status"}}, write_end.get(), 5)["state"], "running");
  write_end.reset();
  EXPECT_TRUE(eventually([&] { return reads_end_of_file(read_end.get()); }));
}

// The fd belongs to the line its bytes began: one sent with a second line, after a first line
// in the same connection, goes with the second.
TEST_F(MigrationControlTest, TheFdGoesWithTheLineItWasSentWith) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  UniqueFd read_end = pipe_end(fds, 0), write_end = pipe_end(fds, 1);
  UniqueFd connection(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::connect(connection.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const std::string first = R"({"op":"status"})" "\n";
  ASSERT_EQ(::send(connection.get(), first.data(), first.size(), 0), static_cast<ssize_t>(first.size()));
  std::string second = R"({"op":"migrate-send"})" "\n";
  iovec data{second.data(), second.size()};
  alignas(cmsghdr) char control_bytes[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control_bytes;
  message.msg_controllen = sizeof(control_bytes);
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  const int passed = write_end.get();
  std::memcpy(CMSG_DATA(header), &passed, sizeof(int));
  ASSERT_EQ(::sendmsg(connection.get(), &message, 0), static_cast<ssize_t>(second.size()));
  ASSERT_TRUE(eventually([&] { return domain.started == 1; }));
  domain.release();
  std::string replies;
  char buffer[512];
  while (std::count(replies.begin(), replies.end(), '\n') < 2) {
    const ssize_t n = ::recv(connection.get(), buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    replies.append(buffer, static_cast<size_t>(n));
  }
  EXPECT_NE(replies.find(R"("state":"running")"), std::string::npos) << replies;
  EXPECT_NE(replies.find(R"("rounds":3)"), std::string::npos) << replies;
  // After the migration's reply, the connection is closed.
  EXPECT_EQ(::recv(connection.get(), buffer, sizeof(buffer), 0), 0);
}

TEST(EventLoopCallTest, RunsInTheLoopsThreadAndPassesOnWhatItThrows) {
  EventLoop loop;
  std::thread::id ran_in;
  loop.call([&] { ran_in = std::this_thread::get_id(); });  // not running: here
  EXPECT_EQ(ran_in, std::this_thread::get_id());
  UniqueFd kick(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::thread::id loop_thread;
  loop.add(kick.get(), [&] {
    drain_eventfd(kick.get());
    loop_thread = std::this_thread::get_id();
    loop.call([&] { ran_in = std::this_thread::get_id(); });  // from the loop itself: at once
  });
  loop.start();
  signal_eventfd(kick.get());
  ASSERT_TRUE(eventually([&] { return loop_thread != std::thread::id(); }));
  EXPECT_EQ(ran_in, loop_thread);
  std::thread::id called_in;
  loop.call([&] { called_in = std::this_thread::get_id(); });
  EXPECT_EQ(called_in, loop_thread);
  EXPECT_THROW(loop.call([] { throw Error("refused"); }), Error);
  loop.stop();
}

TEST(MigrationRateTest, MeasuresRoundsAndConverges) {
  MigrationRate rate(50, 5, 0);
  EXPECT_EQ(rate.bytes_per_s(), 0);
  EXPECT_FALSE(rate.converged(4096, 1));  // nothing measured: only an empty round converges
  EXPECT_TRUE(rate.converged(0, 1));
  rate.round_sent(100 << 20, 1.0);  // 100 MiB/s
  EXPECT_DOUBLE_EQ(rate.bytes_per_s(), 100 << 20);
  EXPECT_DOUBLE_EQ(rate.expected_ms(10 << 20), 100.0);
  EXPECT_TRUE(rate.converged(5 << 20, 2));   // 50 ms
  EXPECT_FALSE(rate.converged(6 << 20, 2));  // 60 ms
  EXPECT_TRUE(rate.converged(6 << 20, 5));   // the rounds are spent
  rate.round_sent(4096, 0.000001);           // too small to measure the link: kept
  EXPECT_DOUBLE_EQ(rate.bytes_per_s(), 100 << 20);
  rate.round_sent(1 << 20, 0.1);  // 10 MiB/s
  EXPECT_DOUBLE_EQ(rate.bytes_per_s(), 10 << 20);
}

TEST(MigrationRateTest, PacesToTheLimit) {
  MigrationRate unlimited(50, 5, 0);
  EXPECT_EQ(unlimited.pace(1 << 30, 0.001).count(), 0);
  MigrationRate limited(50, 5, 10 << 20);  // 10 MiB/s
  EXPECT_EQ(limited.pace(5 << 20, 0.5).count(), 0);  // on time
  EXPECT_EQ(limited.pace(5 << 20, 0.6).count(), 0);  // behind
  const auto wait = limited.pace(5 << 20, 0.2);      // ahead by 0.3 s
  EXPECT_NEAR(static_cast<double>(wait.count()), 0.3e9, 1e6);
}

// Auto-converge's policy: from round 2 on, a guest that dirties at least half what the link
// carries is throttled, 20% then 10 points a round, 99% at most; a slower one keeps what it has.
TEST(MigrationRateTest, ThrottlesAGuestThatDirtiesTooFast) {
  constexpr double kLink = 16 << 20;
  EXPECT_EQ(MigrationRate::throttle_after(1, 0, kLink * 4, kLink), 0u);  // round 1: all of RAM
  EXPECT_EQ(MigrationRate::throttle_after(2, 0, kLink * 0.49, kLink), 0u);
  EXPECT_EQ(MigrationRate::throttle_after(2, 0, kLink * 0.5, kLink), 20u);
  EXPECT_EQ(MigrationRate::throttle_after(3, 20, kLink * 2, kLink), 30u);
  EXPECT_EQ(MigrationRate::throttle_after(4, 30, kLink / 4, kLink), 30u);  // converging: kept
  EXPECT_EQ(MigrationRate::throttle_after(9, 80, kLink, kLink), 90u);
  EXPECT_EQ(MigrationRate::throttle_after(10, 90, kLink, kLink), 99u);
  EXPECT_EQ(MigrationRate::throttle_after(11, 99, kLink, kLink), 99u);
  EXPECT_EQ(MigrationRate::throttle_after(2, 0, kLink, 0), 0u);  // no bandwidth measured
  // The rounds it takes from the first throttle to the most.
  uint32_t throttle = 0, rounds = 0;
  for (uint32_t round = 2; throttle < MigrationRate::kMaxThrottle; ++round, ++rounds)
    throttle = MigrationRate::throttle_after(round, throttle, kLink, kLink);
  EXPECT_EQ(rounds, 9u);
}

}  // namespace
}  // namespace kdom::vmm
