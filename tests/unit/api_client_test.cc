// Tests of ApiClient against a fake kdomd on a temporary Unix socket: the request line, headers
// and body it sends; JSON and plain replies; error lines from {"error": ...} bodies and from
// other failures; a missing or refusing socket; a daemon that does not answer in time; a
// chunked body handed over as it arrives; and a connection upgraded to a raw byte stream.
#include "cli/api_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "fake_kdomd.h"

namespace kdom::cli {
namespace {

using nlohmann::json;
using fake::CannedReply;
using fake::FakeKdomd;
using fake::RecordedRequest;

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(ApiClient, SendsMethodTargetAndJsonBody) {
  FakeKdomd server([](const RecordedRequest&) { return CannedReply{200, R"({"id": 3, "name": "db"})"}; });
  const ApiClient client(server.path());
  const ApiResponse response = client.request("POST", "/v1/domains/web/rename", json{{"name", "db"}});
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body.at("id"), 3);
  ASSERT_EQ(server.requests().size(), 1u);
  const RecordedRequest request = server.requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/v1/domains/web/rename");
  EXPECT_EQ(json::parse(request.body), (json{{"name", "db"}}));
}

TEST(ApiClient, GetWithoutBodyAndPlainTextReply) {
  FakeKdomd server([](const RecordedRequest&) { return CannedReply{200, "login: "}; });
  const ApiResponse response = ApiClient(server.path()).request("GET", "/v1/domains/1/console");
  EXPECT_EQ(response.text, "login: ");
  EXPECT_TRUE(response.body.is_null());
  EXPECT_EQ(server.requests().at(0).method, "GET");
  EXPECT_EQ(server.requests().at(0).body, "");
}

TEST(ApiClient, CallThrowsTheServersErrorLine) {
  FakeKdomd server([](const RecordedRequest&) { return CannedReply{409, R"({"error": "name 'db' is taken"})"}; });
  const ApiClient client(server.path());
  EXPECT_EQ(error_of([&] { client.call("POST", "/v1/domains/web/rename", json{{"name", "db"}}); }), "name 'db' is taken");
  // request() itself hands any status back.
  EXPECT_EQ(client.request("GET", "/v1/domains/web").status, 409);
}

TEST(ApiClient, ErrorWithoutJsonNamesTheStatus) {
  FakeKdomd server([](const RecordedRequest&) { return CannedReply{500, "it broke\nbadly"}; });
  EXPECT_EQ(error_of([&] { ApiClient(server.path()).call("GET", "/v1/host"); }), "kdomd answered 500: it broke");
}

TEST(ApiClient, MissingSocketSaysKdomdIsNotRunning) {
  const std::string path = std::filesystem::temp_directory_path().string() + "/kdom-no-such-dir-7731/kdomd.sock";
  EXPECT_EQ(error_of([&] { ApiClient(path).call("GET", "/v1/host"); }),
            "cannot reach kdomd at " + path + ": No such file or directory (is kdomd running?)");
}

TEST(ApiClient, RefusedConnectionSaysKdomdIsNotRunning) {
  // A socket file nobody listens on, as a kdomd that died leaves behind.
  FakeKdomd directory_owner([](const RecordedRequest&) { return CannedReply{}; });
  const std::string path = directory_owner.dir() + "/stale.sock";
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(error_of([&] { ApiClient(path).call("GET", "/v1/host"); }),
            "cannot reach kdomd at " + path + ": Connection refused (is kdomd running?)");
}

TEST(ApiClient, SilentDaemonTimesOut) {
  FakeKdomd server([](const RecordedRequest&) {
    CannedReply reply;
    reply.delay = std::chrono::milliseconds(800);
    return reply;
  });
  const ApiClient client(server.path(), std::chrono::milliseconds(150));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of([&] { client.call("GET", "/v1/host"); }), "kdomd did not answer within 150 ms (GET /v1/host)");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(700));
  // A per-call limit overrides the client's.
  EXPECT_EQ(client.call("GET", "/v1/host", std::nullopt, std::chrono::seconds(5)), json::object());
}

TEST(ApiClient, DaemonHangingUpIsOneLine) {
  FakeKdomd server([](const RecordedRequest&) {
    CannedReply reply;
    reply.raw = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial";
    return reply;
  });
  EXPECT_EQ(error_of([&] { ApiClient(server.path()).call("GET", "/v1/host"); }),
            "kdomd closed the connection while GET /v1/host");
}

TEST(ApiClient, StreamGetHandsOverChunksAsTheyCome) {
  FakeKdomd server([](const RecordedRequest&) {
    CannedReply reply;
    reply.raw =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        "6\r\nhello \r\n";
    reply.after_raw = [](int fd) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const std::string rest = "5\r\nworld\r\n0\r\n\r\n";
      ASSERT_EQ(::write(fd, rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
    };
    return reply;
  });
  std::vector<std::string> pieces;
  ApiClient(server.path()).stream_get("/v1/domains/web/console?follow=1",
                                      [&](std::string_view data) {
                                        pieces.emplace_back(data);
                                        return true;
                                      });
  std::string all;
  for (const auto& piece : pieces) all += piece;
  EXPECT_EQ(all, "hello world");
  EXPECT_GE(pieces.size(), 2u);
  EXPECT_EQ(server.requests().at(0).target, "/v1/domains/web/console?follow=1");
}

TEST(ApiClient, StreamGetErrorStatusThrowsItsLine) {
  FakeKdomd server([](const RecordedRequest&) { return CannedReply{404, R"({"error": "unknown domain 'nope'"})"}; });
  bool called = false;
  EXPECT_EQ(error_of([&] {
              ApiClient(server.path()).stream_get("/v1/domains/nope/console?follow=1", [&](std::string_view) { return called = true; });
            }),
            "unknown domain 'nope'");
  EXPECT_FALSE(called);
}

TEST(ApiClient, UpgradeGivesARawStreamWithTheEarlyBytes) {
  std::string heard;
  FakeKdomd server([&](const RecordedRequest&) {
    CannedReply reply;
    reply.raw = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: kdom-console\r\n\r\nlogin: ";
    reply.after_raw = [&](int fd) {
      char buffer[16];
      while (heard.size() < 4) {
        const ssize_t n = ::read(fd, buffer, sizeof(buffer));
        if (n <= 0) return;
        heard.append(buffer, static_cast<size_t>(n));
      }
      ASSERT_EQ(::write(fd, "ok", 2), 2);
    };
    return reply;
  });
  UpgradedConnection connection = ApiClient(server.path()).upgrade("/v1/domains/web/console", "kdom-console");
  EXPECT_EQ(server.requests().at(0).upgrade, "kdom-console");
  // Beast may or may not have read past the headers; what it did is in early_bytes.
  std::string received = connection.early_bytes;
  ASSERT_EQ(::write(connection.fd.get(), "root", 4), 4);
  char buffer[64];
  for (ssize_t n; (n = ::read(connection.fd.get(), buffer, sizeof(buffer))) > 0;) received.append(buffer, n);
  EXPECT_EQ(received, "login: ok");
  EXPECT_EQ(heard, "root");
}

TEST(ApiClient, UpgradeRefusedThrowsTheServersLine) {
  FakeKdomd server([](const RecordedRequest&) { return CannedReply{409, R"({"error": "domain 'web' is not running"})"}; });
  EXPECT_EQ(error_of([&] { ApiClient(server.path()).upgrade("/v1/domains/web/console", "kdom-console"); }),
            "domain 'web' is not running");
}

TEST(ApiClient, PathSegmentsArePercentEncoded) {
  EXPECT_EQ(url_path_segment("web-1.a_b~"), "web-1.a_b~");
  EXPECT_EQ(url_path_segment("a b/c?d"), "a%20b%2Fc%3Fd");
}

TEST(ApiClient, SocketPathFromEnvironment) {
  const char* saved = std::getenv("KDOM_SOCKET");
  const std::string saved_value = saved ? saved : "";
  ::setenv("KDOM_SOCKET", "/tmp/other.sock", 1);
  EXPECT_EQ(kdomd_socket_path_from_environment(), "/tmp/other.sock");
  ::unsetenv("KDOM_SOCKET");
  EXPECT_EQ(kdomd_socket_path_from_environment(), "/run/kdom/kdomd.sock");
  if (saved) ::setenv("KDOM_SOCKET", saved_value.c_str(), 1);
}

}  // namespace
}  // namespace kdom::cli
