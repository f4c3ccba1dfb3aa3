// Tests of the control interface: request handling (malformed JSON, wrong types, unknown ops,
// no balloon, targets beyond guest memory, the statistics reply, the power button) and the
// socket transport over a real Unix socket served by a real EventLoop (an existing path is
// refused and left alone, several requests per connection, split and over-long lines, the
// client's errors, `kdom shutdown --wait` ending with the domain or giving up).
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "base/eventfd.h"
#include "cli/balloon_command.h"
#include "cli/control_client.h"
#include "cli/shutdown_command.h"
#include "vmm/control_requests.h"
#include "vmm/control_socket.h"

namespace kdom::vmm {
namespace {

using devices::virtio::BalloonDevice;
using nlohmann::json;

json reply_to(ControlRequests& requests, const std::string& line) { return json::parse(requests.handle_line(line)); }

TEST(ControlRequestsTest, MalformedRequestsGetAnErrorReply) {
  ControlRequests requests(std::make_shared<BalloonDevice>(devices::virtio::BalloonDeviceConfig{}), 512, nullptr);
  for (const char* line : {"", "{", "not json", "[1,2]", "42", "{}", R"({"op":7})", R"({"op":"frobnicate"})",
                           R"({"op":"balloon-set"})", R"({"op":"balloon-set","target_mib":-1})",
                           R"({"op":"balloon-set","target_mib":1.5})", R"({"op":"balloon-set","target_mib":"64"})",
                           R"({"op":"balloon-set","target_mib":513})",
                           R"({"op":"balloon-set","target_mib":18446744073709551615})"}) {
    json reply = reply_to(requests, line);
    EXPECT_EQ(reply["ok"], false) << line;
    EXPECT_TRUE(reply["error"].is_string() && !reply["error"].get<std::string>().empty()) << line;
  }
  EXPECT_NE(reply_to(requests, R"({"op":"frobnicate"})")["error"].get<std::string>().find("unknown op"),
            std::string::npos);
  EXPECT_NE(reply_to(requests, R"({"op":"balloon-set","target_mib":513})")["error"].get<std::string>().find(
                "larger than guest memory"),
            std::string::npos);
}

TEST(ControlRequestsTest, NoBalloonDevice) {
  ControlRequests requests(nullptr, 512, nullptr);
  for (const char* line : {R"({"op":"balloon-set","target_mib":1})", R"({"op":"balloon-stats"})"}) {
    json reply = reply_to(requests, line);
    EXPECT_EQ(reply["ok"], false);
    EXPECT_NE(reply["error"].get<std::string>().find("no balloon device"), std::string::npos);
  }
}

TEST(ControlRequestsTest, SetsTheTargetAndReportsIt) {
  auto balloon = std::make_shared<BalloonDevice>(devices::virtio::BalloonDeviceConfig{});
  ControlRequests requests(balloon, 512, nullptr);
  EXPECT_EQ(reply_to(requests, R"({"op":"balloon-set","target_mib":128})"), json({{"ok", true}}));
  EXPECT_EQ(balloon->target_pages(), 128u * 256);
  EXPECT_EQ(reply_to(requests, R"({"op":"balloon-set","target_mib":512})")["ok"], true);
  json stats = reply_to(requests, R"({"op":"balloon-stats"})");
  EXPECT_EQ(stats["ok"], true);
  EXPECT_EQ(stats["target_mib"], 512);
  EXPECT_EQ(stats["actual_mib"], 0);
  EXPECT_TRUE(stats["stats"].is_object());
  EXPECT_TRUE(stats["stats_age_s"].is_null());  // the guest has sent none
  EXPECT_EQ(reply_to(requests, R"({"op":"balloon-set","target_mib":0})")["ok"], true);
  EXPECT_EQ(balloon->target_pages(), 0u);
}

TEST(ControlRequestsTest, PowerButtonIsPressedOncePerRequestOnceTheDomainIsBuilt) {
  bool built = false;
  int presses = 0;
  ControlRequests requests(nullptr, 512, [&] {
    if (!built) return false;
    ++presses;
    return true;
  });
  json early = reply_to(requests, R"({"op":"power-button"})");
  EXPECT_EQ(early["ok"], false);
  EXPECT_NE(early["error"].get<std::string>().find("still starting"), std::string::npos);
  built = true;
  EXPECT_EQ(reply_to(requests, R"({"op":"power-button"})"), json({{"ok", true}}));
  EXPECT_EQ(reply_to(requests, R"({"op":"power-button"})"), json({{"ok", true}}));
  EXPECT_EQ(presses, 2);
  EXPECT_NE(reply_to(requests, R"({"op":"frobnicate"})")["error"].get<std::string>().find("power-button"),
            std::string::npos);
}

class ControlSocketTest : public ::testing::Test {
 protected:
  std::filesystem::path dir;
  std::string path;
  EventLoop events;
  std::shared_ptr<BalloonDevice> balloon = std::make_shared<BalloonDevice>(devices::virtio::BalloonDeviceConfig{});
  std::atomic<int> presses = 0;  // pressed on the event loop's thread
  ControlRequests requests{balloon, 1024, [this] {
                             ++presses;
                             return true;
                           }};

  void SetUp() override {
    char name[] = "/tmp/kdom-control-test-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir = name;
    path = (dir / "ctl").string();
  }
  void TearDown() override {
    events.stop();
    std::filesystem::remove_all(dir);
  }
  // Connects, sends `text` in one write, reads until `lines` newlines or EOF.
  std::string exchange(const std::string& text, int lines) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    timeval timeout{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    EXPECT_EQ(send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
    std::string reply;
    char buffer[4096];
    while (std::count(reply.begin(), reply.end(), '\n') < lines) {
      ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      reply.append(buffer, static_cast<size_t>(n));
    }
    close(fd);
    return reply;
  }
};

TEST_F(ControlSocketTest, AnExistingPathIsRefusedAndLeftAlone) {
  std::ofstream(path) << "precious";
  EXPECT_THROW(ControlSocket(path, events, requests), Error);
  std::ifstream in(path);
  std::string contents;
  in >> contents;
  EXPECT_EQ(contents, "precious");
}

TEST_F(ControlSocketTest, ServesRequestsAndRemovesTheSocketAtTheEnd) {
  {
    ControlSocket control(path, events, requests);
    EXPECT_TRUE(std::filesystem::is_socket(path));
    events.start();
    // Two requests in one write, one broken: two replies in order.
    std::string replies = exchange("{\"op\":\"balloon-set\",\"target_mib\":256}\nnonsense\r\n", 2);
    auto newline = replies.find('\n');
    ASSERT_NE(newline, std::string::npos);
    EXPECT_EQ(json::parse(replies.substr(0, newline))["ok"], true);
    EXPECT_EQ(json::parse(replies.substr(newline + 1))["ok"], false);
    EXPECT_EQ(balloon->target_pages(), 256u * 256);
    // The CLI's client, against the same socket.
    json stats = vmm::control_request(path, {{"op", "balloon-stats"}});
    EXPECT_EQ(stats["target_mib"], 256);
    EXPECT_THROW(vmm::control_request(path, {{"op", "balloon-set"}, {"target_mib", 4096}}), Error);
    std::ostringstream out;
    EXPECT_EQ(cli::balloon_command({"--control", path, "set", "64"}, out), 0);
    EXPECT_NE(out.str().find("64 MiB"), std::string::npos);
    EXPECT_EQ(balloon->target_pages(), 64u * 256);
    out.str("");
    EXPECT_EQ(cli::balloon_command({"--control", path, "stats"}, out), 0);
    EXPECT_NE(out.str().find("target_mib: 64"), std::string::npos);
    out.str("");
    EXPECT_EQ(cli::shutdown_command({"--control", path}, out), 0);
    EXPECT_NE(out.str().find("power button"), std::string::npos);
    EXPECT_EQ(presses, 1);
    // An over-long line: an error reply, and the connection is closed.
    std::string reply = exchange(std::string(ControlSocket::kMaxLineBytes + 10, 'x'), 1);
    EXPECT_NE(reply.find("longer than"), std::string::npos);
    // Still serving.
    EXPECT_EQ(vmm::control_request(path, {{"op", "balloon-stats"}})["ok"], true);
    events.stop();
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(ControlSocketTest, ShutdownWaitReturnsOnceTheDomainIsGone) {
  auto control = std::make_unique<ControlSocket>(path, events, requests);
  events.start();
  std::ostringstream out;
  int status = -1;
  std::thread client([&] { status = cli::shutdown_command({"--control", path, "--wait", "20"}, out); });
  // The domain stops once its button was pressed: its socket goes away, as kdom's does.
  for (int i = 0; i < 1000 && presses == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(presses, 1);
  events.stop();
  control.reset();
  client.join();
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.str().find("the guest shut down"), std::string::npos) << out.str();
}

TEST_F(ControlSocketTest, ShutdownWaitGivesUpWhenTheDomainStaysUp) {
  ControlSocket control(path, events, requests);
  events.start();
  std::ostringstream out;
  const auto start = std::chrono::steady_clock::now();
  try {
    cli::shutdown_command({"--control", path, "--wait", "1"}, out);
    ADD_FAILURE() << "kdom shutdown --wait 1 returned although the domain stayed up";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("did not shut down within 1 s"), std::string::npos) << error.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(presses, 1);
  EXPECT_TRUE(vmm::control_socket_answers(path));
  events.stop();
}

TEST_F(ControlSocketTest, ClientErrors) {
  std::ostringstream out;
  EXPECT_THROW(vmm::control_request(path, {{"op", "balloon-stats"}}), Error);  // no socket
  EXPECT_THROW(cli::balloon_command({"stats"}, out), Error);                    // no --control
  EXPECT_THROW(cli::balloon_command({"--control", path, "set"}, out), Error);
  EXPECT_THROW(cli::balloon_command({"--control", path, "set", "-5"}, out), Error);
  EXPECT_THROW(cli::balloon_command({"--control", path, "inflate"}, out), Error);
  EXPECT_THROW(cli::balloon_command({"--control"}, out), Error);
  EXPECT_THROW(cli::shutdown_command({}, out), Error);                           // no --control
  EXPECT_THROW(cli::shutdown_command({"--control", path, "now"}, out), Error);  // a word too many
  EXPECT_THROW(cli::shutdown_command({"--force", "--control", path}, out), Error);
  EXPECT_THROW(cli::shutdown_command({"--control", path, "--wait", "0"}, out), Error);
  EXPECT_THROW(cli::shutdown_command({"--control", path, "--wait", "soon"}, out), Error);
  EXPECT_THROW(cli::shutdown_command({"--control", path, "--wait"}, out), Error);
  EXPECT_FALSE(vmm::control_socket_answers(path));
  EXPECT_THROW(cli::shutdown_command({"--control", path}, out), Error);  // no socket
  EXPECT_EQ(presses, 0);
  try {
    vmm::control_request(path, {{"op", "balloon-stats"}});
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no control socket"), std::string::npos);
  }
}

// A handler that throws loses its fd, and the loop goes on serving the others.
TEST(EventLoopTest, AThrowingHandlerIsDroppedAndTheLoopGoesOn) {
  EventLoop loop;
  UniqueFd bad(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd good(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::atomic<int> bad_calls{0}, good_calls{0};
  loop.add(bad.get(), [&] {
    ++bad_calls;
    throw Error("broken device");  // never drained: a live handler would run again and again
  });
  loop.add(good.get(), [&] {
    drain_eventfd(good.get());
    ++good_calls;
  });
  loop.start();
  signal_eventfd(bad.get());
  for (int i = 0; i < 200 && bad_calls == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  signal_eventfd(good.get());
  for (int i = 0; i < 200 && good_calls == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  loop.stop();
  EXPECT_EQ(bad_calls, 1);
  EXPECT_EQ(good_calls, 1);
}

}  // namespace
}  // namespace kdom::vmm
