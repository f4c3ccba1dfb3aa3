// Tests of the store as a guest reaches it: the line protocol over the Unix socket the VMM
// joins the guest's vsock connections to, every request made as that domain (its keys, never
// another's; its quota), a watch's events, bad lines, the connection limit and stop.
#include "toolstack/store_guest_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "base/unique_fd.h"

namespace kdom::toolstack {
namespace {

class StoreGuestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/kdom-store-guest.XXXXXX";
    dir_ = mkdtemp(pattern);
    StoreLimits limits;
    limits.nodes = 20;
    store_ = std::make_unique<Store>(std::map<std::string, StoreNode>{}, Store::Persist{}, limits);
    store_->write(Store::kHost, "/local/domain/5/name", "web");
    store_->set_permissions(Store::kHost, "/local/domain/5", StorePermissions::parse("n0 r5"));
    store_->set_permissions(Store::kHost, "/local/domain/5/name", StorePermissions::parse("n0 r5"));
    store_->write(Store::kHost, "/local/domain/5/data", "");
    store_->set_permissions(Store::kHost, "/local/domain/5/data", StorePermissions::parse("n5"));
    store_->write(Store::kHost, "/local/domain/6/name", "db");
    server_ = std::make_unique<StoreGuestServer>(*store_);
    server_->serve(5, socket_path());
  }
  void TearDown() override {
    server_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string socket_path() const { return dir_ + "/vsock.sock_7001"; }
  UniqueFd connect_guest() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket_path().c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    timeval timeout{10, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    return fd;
  }
  static void send_text(int fd, const std::string& text) {
    ASSERT_EQ(::send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
  }
  // The next line from `fd` ("" at its end).
  std::string line(int fd) {
    std::string& pending = pending_[fd];
    for (;;) {
      if (const size_t end = pending.find('\n'); end != std::string::npos) {
        std::string first = pending.substr(0, end);
        pending.erase(0, end + 1);
        return first;
      }
      char chunk[4096];
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) return "";
      pending.append(chunk, static_cast<size_t>(n));
    }
  }
  std::string ask(int fd, const std::string& request) {
    send_text(fd, request + "\n");
    return line(fd);
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<StoreGuestServer> server_;
  std::map<int, std::string> pending_;
};

TEST_F(StoreGuestServerTest, AGuestReadsAndWritesItsOwnKeysAndNoOneElses) {
  UniqueFd guest = connect_guest();
  EXPECT_EQ(ask(guest.get(), "READ name"), "OK web");
  EXPECT_EQ(ask(guest.get(), "READ /local/domain/5/name"), "OK web");
  EXPECT_EQ(ask(guest.get(), "WRITE data/greeting hello, host\\nsecond line \\\\o/"), "OK");
  EXPECT_EQ(store_->read(Store::kHost, "/local/domain/5/data/greeting"), "hello, host\nsecond line \\o/");
  EXPECT_EQ(ask(guest.get(), "READ data/greeting"), "OK hello, host\\nsecond line \\\\o/");
  EXPECT_EQ(ask(guest.get(), "LS data"), "OK greeting");
  EXPECT_EQ(ask(guest.get(), "WRITE data/empty"), "OK");
  EXPECT_EQ(store_->read(Store::kHost, "/local/domain/5/data/empty"), "");
  EXPECT_EQ(ask(guest.get(), "RM data/greeting"), "OK");
  EXPECT_EQ(ask(guest.get(), "READ data/greeting"), "ERR no store node /local/domain/5/data/greeting");

  EXPECT_EQ(ask(guest.get(), "READ /local/domain/6/name"), "ERR domain 5 may not read /local/domain/6/name");
  EXPECT_EQ(ask(guest.get(), "LS /local/domain/6"), "ERR domain 5 may not read /local/domain/6");
  EXPECT_EQ(ask(guest.get(), "WRITE /local/domain/6/name evil").rfind("ERR ", 0), 0u);
  EXPECT_EQ(ask(guest.get(), "WRITE name evil").rfind("ERR ", 0), 0u);
  EXPECT_EQ(ask(guest.get(), "RM name").rfind("ERR ", 0), 0u);
  EXPECT_EQ(store_->read(Store::kHost, "/local/domain/6/name"), "db");
  EXPECT_EQ(store_->read(Store::kHost, "/local/domain/5/name"), "web");
  EXPECT_EQ(ask(guest.get(), "FROB x"), "ERR unknown request 'FROB' (READ, WRITE, LS, RM, WATCH)");
  EXPECT_EQ(ask(guest.get(), "READ /a//b").rfind("ERR store path", 0), 0u);
}

TEST_F(StoreGuestServerTest, AFloodingGuestHitsItsQuotaAndNothingElseIsHurt) {
  UniqueFd guest = connect_guest();
  std::string flood;
  for (int i = 0; i < 40; ++i) flood += "WRITE data/flood" + std::to_string(i) + " x\n";
  send_text(guest.get(), flood);
  int ok = 0, refused = 0;
  for (int i = 0; i < 40; ++i) {
    const std::string reply = line(guest.get());
    if (reply == "OK") ++ok;
    if (reply.find("would own more than 20 store nodes") != std::string::npos) ++refused;
  }
  EXPECT_EQ(ok, 19) << "20 nodes with its data node";
  EXPECT_EQ(refused, 21);
  EXPECT_EQ(store_->nodes_owned(5), 20u);
  EXPECT_NO_THROW(store_->write(Store::kHost, "/local/domain/6/more", "the host and others go on"));
  // A line without an end is cut off, not buffered without bound.
  send_text(guest.get(), std::string(StoreGuestServer::kMaxLineBytes + 10, 'x'));
  EXPECT_EQ(line(guest.get()), "ERR a request line is longer than 8192 bytes");
  EXPECT_EQ(line(guest.get()), "") << "and the connection is closed";
}

TEST_F(StoreGuestServerTest, AWatchSendsEventsForItsSubtreeOnly) {
  UniqueFd watcher = connect_guest();
  EXPECT_EQ(ask(watcher.get(), "WATCH data/cmd"), "OK");
  EXPECT_EQ(line(watcher.get()), "EVENT watch /local/domain/5/data/cmd");
  store_->write(Store::kHost, "/local/domain/6/name", "other domains' changes are not seen");
  store_->write(Store::kHost, "/local/domain/5/data/cmd", "go");
  EXPECT_EQ(line(watcher.get()), "EVENT written /local/domain/5/data/cmd");
  store_->remove(Store::kHost, "/local/domain/5/data");
  EXPECT_EQ(line(watcher.get()), "EVENT removed /local/domain/5/data");
  UniqueFd other = connect_guest();
  EXPECT_EQ(ask(other.get(), "WATCH /local/domain/6"), "ERR domain 5 may watch only inside /local/domain/5");
}

TEST_F(StoreGuestServerTest, ConnectionsAreLimitedAndStopClosesThem) {
  std::vector<UniqueFd> guests;
  for (size_t i = 0; i < StoreGuestServer::kMaxConnectionsPerDomain; ++i) {
    guests.push_back(connect_guest());
    EXPECT_EQ(ask(guests.back().get(), "READ name"), "OK web");
  }
  UniqueFd extra = connect_guest();
  EXPECT_EQ(line(extra.get()).rfind("ERR this domain has 4 store connections open", 0), 0u);
  EXPECT_EQ(ask(guests[0].get(), "WATCH data"), "OK");
  server_->stop(5);
  for (auto& guest : guests) {
    std::string rest;
    for (std::string got; !(got = line(guest.get())).empty();) rest += got;
    EXPECT_EQ(rest.find("OK web"), std::string::npos);
  }
  EXPECT_FALSE(std::filesystem::exists(socket_path()));
}

TEST(StoreLineEscape, RoundTrips) {
  for (const std::string value : {"", "plain", "a\nb", "back\\slash", "\\n literal", "end\\"})
    EXPECT_EQ(store_line_unescape(store_line_escape(value)), value) << value;
  EXPECT_EQ(store_line_escape("a\nb\\"), "a\\nb\\\\");
}

}  // namespace
}  // namespace kdom::toolstack
