// Tests of the console on a Unix socket (`--console socket:PATH`) over a real socket served by
// a real EventLoop: output written before anyone connects reaches the first client, the
// client's bytes reach the input handler, a second client replaces the first, the buffer keeps
// only the newest 64 KiB, an existing path is refused and the socket file goes with the console.
#include "vmm/console.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "base/error.h"

namespace kdom::vmm {
namespace {

class SocketConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kdom-console-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "console.sock").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  UniqueFd connect_client() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
      throw SystemError("connect", errno);
    return fd;
  }

  // Reads until `want` bytes came, the peer closed, or 2 s passed.
  static std::string read_some(int fd, size_t want) {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buffer[4096];
      ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n <= 0) break;
      got.append(buffer, static_cast<size_t>(n));
    }
    return got;
  }

  // Whether the peer closed `fd` within 2 s.
  static bool closed_by_peer(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) return false;
    char byte;
    return ::read(fd, &byte, 1) == 0;
  }

  std::filesystem::path dir_;
  std::string path_;
  EventLoop events_;
  std::mutex input_mutex_;
  std::condition_variable input_cv_;
  std::string input_;

  Console::InputHandler input_handler() {
    return [this](std::span<const uint8_t> bytes) {
      std::lock_guard lock(input_mutex_);
      input_.append(bytes.begin(), bytes.end());
      input_cv_.notify_all();
    };
  }
  std::string wait_for_input(size_t want) {
    std::unique_lock lock(input_mutex_);
    input_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return input_.size() >= want; });
    return input_;
  }
};

void write_text(Console& console, const std::string& text) {
  for (char c : text) console.write_byte(static_cast<uint8_t>(c));
}

TEST_F(SocketConsoleTest, OutputBeforeConnectIsDeliveredOnConnect) {
  Console console({ConsoleKind::kSocket, path_}, &events_, input_handler());
  events_.start();
  write_text(console, "early boot\n");
  UniqueFd client = connect_client();
  EXPECT_EQ(read_some(client.get(), 11), "early boot\n");
  write_text(console, "later");
  EXPECT_EQ(read_some(client.get(), 5), "later");
  events_.stop();
}

TEST_F(SocketConsoleTest, ClientBytesReachTheInputHandler) {
  Console console({ConsoleKind::kSocket, path_}, &events_, input_handler());
  EXPECT_EQ(console.input_fd(), -1);  // input comes through the handler, not an fd
  events_.start();
  UniqueFd client = connect_client();
  ASSERT_EQ(::write(client.get(), "ls\r", 3), 3);
  EXPECT_EQ(wait_for_input(3), "ls\r");
  events_.stop();
}

TEST_F(SocketConsoleTest, SecondClientReplacesTheFirst) {
  Console console({ConsoleKind::kSocket, path_}, &events_, input_handler());
  events_.start();
  UniqueFd first = connect_client();
  write_text(console, "one");
  EXPECT_EQ(read_some(first.get(), 3), "one");
  UniqueFd second = connect_client();
  EXPECT_TRUE(closed_by_peer(first.get()));
  write_text(console, "two");
  EXPECT_EQ(read_some(second.get(), 3), "two");
  events_.stop();
}

TEST_F(SocketConsoleTest, KeepsOnlyTheNewestOutputWhileNobodyReads) {
  Console console({ConsoleKind::kSocket, path_}, &events_, input_handler());
  std::string all;
  for (size_t i = 0; i < SocketConsole::kMaxBufferedOutput + 1000; ++i) all.push_back(static_cast<char>('a' + i % 26));
  console.write({reinterpret_cast<const uint8_t*>(all.data()), 1000});
  console.write({reinterpret_cast<const uint8_t*>(all.data()) + 1000, all.size() - 1000});
  events_.start();
  UniqueFd client = connect_client();
  const std::string got = read_some(client.get(), SocketConsole::kMaxBufferedOutput);
  EXPECT_EQ(got, all.substr(1000));
  events_.stop();
}

TEST_F(SocketConsoleTest, ExistingPathIsRefusedAndOursIsRemoved) {
  std::ofstream(path_) << "someone else's";
  EXPECT_THROW(Console({ConsoleKind::kSocket, path_}, &events_, input_handler()), Error);
  EXPECT_TRUE(std::filesystem::exists(path_));  // left alone
  std::filesystem::remove(path_);
  {
    Console console({ConsoleKind::kSocket, path_}, &events_, input_handler());
    EXPECT_TRUE(std::filesystem::exists(path_));
  }
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(SocketConsoleTest, NeedsAnEventLoop) {
  EXPECT_THROW(Console({ConsoleKind::kSocket, path_}), Error);
}

}  // namespace
}  // namespace kdom::vmm
