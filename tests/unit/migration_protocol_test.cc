// The daemons' migration messages over a socketpair: the hello and its token, framing, limits,
// time-outs, and the target's parsing.
#include "toolstack/migration_protocol.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

namespace kdom::toolstack {
namespace {

struct Pair {
  UniqueFd source, destination;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    source.reset(fds[0]);
    destination.reset(fds[1]);
  }
};

void write_raw(int fd, const std::string& bytes) { ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size())); }

TEST(MigrationProtocol, HelloWithTheRightTokenIsAccepted) {
  Pair pair;
  send_migration_hello(pair.source.get(), "secret-token-0123", {{"config", {{"name", "web"}}}}, "test");
  const auto hello = receive_migration_hello(pair.destination.get(), "secret-token-0123", 1000);
  EXPECT_EQ(hello["config"]["name"], "web");
  EXPECT_FALSE(hello.contains("token"));  // the token goes no further than the check
}

TEST(MigrationProtocol, WrongTokenIsRefused) {
  Pair pair;
  send_migration_hello(pair.source.get(), "secret-token-0124", {}, "test");
  EXPECT_THROW(
      {
        try {
          receive_migration_hello(pair.destination.get(), "secret-token-0123", 1000);
        } catch (const MigrationError& error) {
          EXPECT_STREQ(error.what(), "a migration with the wrong token was refused");
          throw;
        }
      },
      MigrationError);
}

TEST(MigrationProtocol, MissingTokenIsRefused) {
  Pair pair;
  write_raw(pair.source.get(), std::string(kMigrationMagic, 8) + std::string("\x01\x00\x00\x00", 4));
  send_migration_message(pair.source.get(), {{"config", nlohmann::json::object()}}, "test");
  EXPECT_THROW(receive_migration_hello(pair.destination.get(), "secret-token-0123", 1000), MigrationError);
}

TEST(MigrationProtocol, AnythingElseIsRefusedAtOnce) {
  Pair pair;
  write_raw(pair.source.get(), "GET / HTTP/1.1\r\n\r\n");
  try {
    receive_migration_hello(pair.destination.get(), "secret-token-0123", 1000);
    FAIL() << "an HTTP request was taken for a migration";
  } catch (const MigrationError& error) {
    EXPECT_NE(std::string(error.what()).find("did not begin with kdom's migration header"), std::string::npos);
  }
}

TEST(MigrationProtocol, AnotherVersionIsRefusedNamingIt) {
  Pair pair;
  write_raw(pair.source.get(), std::string(kMigrationMagic, 8) + std::string("\x07\x00\x00\x00", 4));
  try {
    receive_migration_hello(pair.destination.get(), "secret-token-0123", 1000);
    FAIL();
  } catch (const MigrationError& error) {
    EXPECT_NE(std::string(error.what()).find("version 7"), std::string::npos) << error.what();
  }
}

TEST(MigrationProtocol, MessagesKeepTheirOrderAndContent) {
  Pair pair;
  send_migration_message(pair.destination.get(), {{"ready", true}, {"id", 7}}, "test");
  send_migration_message(pair.destination.get(), {{"error", "disk missing"}}, "test");
  const auto first = receive_migration_message(pair.source.get(), 1000, "test", "ready");
  EXPECT_EQ(first["id"], 7);
  const auto second = receive_migration_message(pair.source.get(), 1000, "test", "more");
  EXPECT_EQ(second["error"], "disk missing");
}

TEST(MigrationProtocol, OversizedMessageIsRefusedUnread) {
  Pair pair;
  write_raw(pair.source.get(), std::string("\xff\xff\xff\x7f", 4));
  EXPECT_THROW(receive_migration_message(pair.destination.get(), 1000, "test", "x"), MigrationError);
}

TEST(MigrationProtocol, NonObjectIsRefused) {
  Pair pair;
  write_raw(pair.source.get(), std::string("\x03\x00\x00\x00", 4) + "[1]");
  EXPECT_THROW(receive_migration_message(pair.destination.get(), 1000, "test", "x"), MigrationError);
}

TEST(MigrationProtocol, SilenceTimesOutNamingWhatWasAwaited) {
  Pair pair;
  try {
    receive_migration_message(pair.destination.get(), 100, "the source", "the go");
    FAIL();
  } catch (const MigrationError& error) {
    EXPECT_NE(std::string(error.what()).find("while kdomd waited for the go"), std::string::npos) << error.what();
  }
}

TEST(MigrationProtocol, ClosedConnectionIsSaidSo) {
  Pair pair;
  write_raw(pair.source.get(), std::string("\x10\x00\x00\x00", 4) + "{\"re");  // cut mid-message
  pair.source.reset();
  try {
    receive_migration_message(pair.destination.get(), 1000, "the source", "ready");
    FAIL();
  } catch (const MigrationError& error) {
    EXPECT_NE(std::string(error.what()).find("closed the connection"), std::string::npos) << error.what();
  }
}

TEST(MigrationProtocol, TargetParsing) {
  EXPECT_EQ(migration_target("host2"), (std::pair<std::string, uint16_t>{"host2", kDefaultMigrationPort}));
  EXPECT_EQ(migration_target("10.0.0.2:9000"), (std::pair<std::string, uint16_t>{"10.0.0.2", 9000}));
  EXPECT_EQ(migration_target("[fd00::2]:9000"), (std::pair<std::string, uint16_t>{"fd00::2", 9000}));
  EXPECT_EQ(migration_target("[fd00::2]"), (std::pair<std::string, uint16_t>{"fd00::2", kDefaultMigrationPort}));
  EXPECT_EQ(migration_target("localhost"), (std::pair<std::string, uint16_t>{"localhost", kDefaultMigrationPort}));
  for (const char* bad : {"", ":9000", "host:", "host:0", "host:65536", "host:x", "[fd00::2", "[fd00::2]x"})
    EXPECT_THROW(migration_target(bad), Error) << bad;
}

TEST(MigrationProtocol, ConnectionRefusedSaysWhere) {
  // A port nothing listens on (bound, never listening).
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  try {
    connect_migration_peer("127.0.0.1", ntohs(address.sin_port), 1000);
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("cannot connect to the migration port 127.0.0.1:"), std::string::npos)
        << error.what();
  }
  ::close(fd);
}

}  // namespace
}  // namespace kdom::toolstack
