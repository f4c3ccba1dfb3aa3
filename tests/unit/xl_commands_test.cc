// Tests of the xl-style verbs against a fake kdomd: the requests each verb sends (method,
// target, body), xl list's table and state letters, xl uptime's format, xl info's lines,
// mem-set's units, usage errors, error lines from kdomd's 404/409 replies, the legacy
// `shutdown --control` route, create -n from an xl.cfg file (no daemon needed), restore's
// settings, migrate's request, --json lines and --cancel, and the console (the kept log, a followed log, and an attach over pipes).
#include "cli/xl_commands.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "base/error.h"
#include "cli/progress_line.h"
#include "fake_kdomd.h"

namespace kdom::cli {
namespace {

using nlohmann::json;
using fake::CannedReply;
using fake::FakeKdomd;
using fake::RecordedRequest;

const json kWeb = {{"id", 3},         {"name", "web"},  {"uuid", "u-3"},      {"state", "running"},
                   {"memory_mib", 256}, {"target_mib", 256}, {"vcpus", 1},     {"start_time", 1765000000},
                   {"uptime_s", 12.5}, {"cpu_time_s", 1.5}, {"pid", 100},     {"last_exit", ""}};
const json kDb = {{"id", 7},          {"name", "db"},    {"uuid", "u-7"},      {"state", "paused"},
                  {"memory_mib", 1024}, {"target_mib", 768}, {"actual_mib", 768}, {"vcpus", 2}, {"start_time", 1764900000},
                  {"uptime_s", 90061.9}, {"cpu_time_s", 123.45}, {"pid", 101}, {"last_exit", ""}};
const json kHost = {{"hostname", "h1"}, {"kdom_version", "0.1.0"}, {"nr_cpus", 2},
                    {"total_memory_mib", 7940}, {"free_memory_mib", 6000}, {"kernel", "6.1.0-18-amd64"},
                    {"kvm", "hardware"}, {"domains", 2}, {"daemon_pid", 42}, {"daemon_uptime_s", 100.25}};

// kdomd's answers for the two domains above.
CannedReply answer(const RecordedRequest& request) {
  if (request.target == "/v1/host") return {200, kHost.dump()};
  if (request.target == "/v1/domains" && request.method == "GET") return {200, json{{"domains", {kWeb, kDb}}}.dump()};
  for (const json* info : {&kWeb, &kDb}) {
    const std::string base = "/v1/domains/" + (*info)["name"].get<std::string>();
    const std::string by_id = "/v1/domains/" + std::to_string((*info)["id"].get<int>());
    if (request.target.rfind(base, 0) == 0 || request.target.rfind(by_id, 0) == 0) {
      if (request.method == "DELETE") return {200, json{{"destroyed", (*info)["id"]}}.dump()};
      return {200, info->dump()};
    }
  }
  const std::string dom = request.target.substr(std::string("/v1/domains/").size());
  return {404, json{{"error", "unknown domain '" + dom.substr(0, dom.find('/')) + "'"}}.dump()};
}

struct Outcome {
  int status = -1;
  std::string out, err;
  std::string error;  // the Error's line, when one was thrown
};

Outcome run(const std::string& socket, const std::string& verb, const std::vector<std::string>& args,
            int terminal_in = STDIN_FILENO, int terminal_out = STDOUT_FILENO) {
  std::ostringstream out, err;
  XlIo io{out, err, terminal_in, terminal_out};
  Outcome outcome;
  try {
    outcome.status = xl_command(verb, args, ApiClient(socket, std::chrono::seconds(10)), io);
  } catch (const Error& error) {
    outcome.error = error.what();
  }
  outcome.out = out.str();
  outcome.err = err.str();
  return outcome;
}

class XlCommands : public ::testing::Test {
 protected:
  FakeKdomd server{answer};
  Outcome run(const std::string& verb, const std::vector<std::string>& args) { return kdom::cli::run(server.path(), verb, args); }
  // The requests made, as "METHOD TARGET BODY" lines.
  std::vector<std::string> requests() const {
    std::vector<std::string> lines;
    for (const auto& request : server.requests())
      lines.push_back(request.method + " " + request.target + (request.body.empty() ? "" : " " + request.body));
    return lines;
  }
};

using Lines = std::vector<std::string>;

// Mem is what the guest holds now (db's balloon took 256 MiB); without actual_mib (web, an
// older kdomd), what it was given.
TEST_F(XlCommands, ListPrintsXlsTableWithTheHostFirst) {
  const Outcome outcome = run("list", {});
  ASSERT_EQ(outcome.error, "");
  EXPECT_EQ(outcome.status, 0);
  EXPECT_EQ(outcome.out,
            "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
            "Domain-0                                     0  7940     2     r-----       0.0\n"
            "web                                          3   256     1     r-----       1.5\n"
            "db                                           7   768     2     --p---     123.5\n");
}

TEST_F(XlCommands, ListFiltersByNameOrIdAndRefusesUnknownDomains) {
  Outcome outcome = run("list", {"7"});
  EXPECT_EQ(outcome.out,
            "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
            "db                                           7   768     2     --p---     123.5\n");
  EXPECT_EQ(requests(), (Lines{"GET /v1/domains"}));  // no host row, so no /v1/host
  outcome = run("list", {"web", "nosuch"});
  EXPECT_EQ(outcome.error, "unknown domain 'nosuch'");
  EXPECT_EQ(outcome.out, "");
}

TEST_F(XlCommands, ListLongIsTheDomainInfoJson) {
  const Outcome outcome = run("list", {"-l", "web"});
  EXPECT_EQ(json::parse(outcome.out), json::array({kWeb}));
  EXPECT_EQ(json::parse(run("list", {"--json"}).out), json::array({kWeb, kDb}));
}

TEST(XlStateLetters, OneFlagPerState) {
  EXPECT_EQ(xl_state_letters("running"), "r-----");
  EXPECT_EQ(xl_state_letters("paused"), "--p---");
  EXPECT_EQ(xl_state_letters("shutdown"), "---s--");
  EXPECT_EQ(xl_state_letters("crashed"), "----c-");
  EXPECT_EQ(xl_state_letters("dying"), "-----d");
  EXPECT_EQ(xl_state_letters("starting"), "------");
}

TEST(XlUptimeText, HoursMinutesSecondsAndDays) {
  EXPECT_EQ(xl_uptime_text(0), " 0:00:00");
  EXPECT_EQ(xl_uptime_text(3725.9), " 1:02:05");
  EXPECT_EQ(xl_uptime_text(23 * 3600 + 59 * 60 + 59), "23:59:59");
  EXPECT_EQ(xl_uptime_text(86400 + 3661), "1 day,  1:01:01");
  EXPECT_EQ(xl_uptime_text(3 * 86400 + 12 * 3600), "3 days, 12:00:00");
}

TEST_F(XlCommands, UptimeUsesXlsColumns) {
  const Outcome outcome = run("uptime", {"web", "db"});
  ASSERT_EQ(outcome.error, "");
  EXPECT_EQ(outcome.out,
            "Name                                ID Uptime\n"
            "web                                  3  0:00:12\n"
            "db                                   7 1 day,  1:01:01\n");
  const Outcome all = run("uptime", {});
  EXPECT_EQ(all.out.rfind("Name                                ID Uptime\nDomain-0                             0 ", 0), 0u) << all.out;
}

TEST_F(XlCommands, InfoPrintsKeyValueLines) {
  const Outcome outcome = run("info", {});
  ASSERT_EQ(outcome.error, "");
  EXPECT_NE(outcome.out.find("host                   : h1\n"), std::string::npos) << outcome.out;
  EXPECT_NE(outcome.out.find("release                : 6.1.0-18-amd64\n"), std::string::npos);
  EXPECT_NE(outcome.out.find("nr_cpus                : 2\n"), std::string::npos);
  EXPECT_NE(outcome.out.find("total_memory           : 7940\n"), std::string::npos);
  EXPECT_NE(outcome.out.find("kdomd_uptime           : 100.2\n"), std::string::npos);
  EXPECT_EQ(outcome.out.substr(0, 4), "host");
}

TEST_F(XlCommands, EachVerbSendsItsRequest) {
  struct Case {
    std::string verb;
    std::vector<std::string> args;
    std::string request;
    std::string out;
  };
  const Case cases[] = {
      {"destroy", {"web"}, "DELETE /v1/domains/web", ""},
      {"pause", {"3"}, "POST /v1/domains/3/pause", ""},
      {"unpause", {"web"}, "POST /v1/domains/web/unpause", ""},
      {"reboot", {"web"}, "POST /v1/domains/web/reboot", ""},
      {"rename", {"web", "www"}, R"(POST /v1/domains/web/rename {"name":"www"})", ""},
      {"mem-set", {"db", "512m"}, R"(POST /v1/domains/db/mem-set {"memory_mib":512})", ""},
      {"shutdown", {"web"}, "POST /v1/domains/web/shutdown {}", ""},
      {"shutdown", {"-w", "web"}, R"(POST /v1/domains/web/shutdown {"wait_seconds":3600})", ""},
      {"domid", {"db"}, "GET /v1/domains/db", "7\n"},
      {"domname", {"3"}, "GET /v1/domains/3", "web\n"},
      {"console", {"--log", "web"}, "GET /v1/domains/web/console", kWeb.dump()},
  };
  for (const auto& test : cases) {
    FakeKdomd fresh{answer};
    const Outcome outcome = kdom::cli::run(fresh.path(), test.verb, test.args);
    EXPECT_EQ(outcome.error, "") << test.verb;
    EXPECT_EQ(outcome.status, 0) << test.verb;
    EXPECT_EQ(outcome.out, test.out) << test.verb;
    ASSERT_EQ(fresh.requests().size(), 1u) << test.verb;
    const auto request = fresh.requests()[0];
    EXPECT_EQ(request.method + " " + request.target + (request.body.empty() ? "" : " " + request.body), test.request);
  }
}

TEST_F(XlCommands, DomainZeroIsTheHost) {
  EXPECT_EQ(run("domid", {"Domain-0"}).out, "0\n");
  EXPECT_EQ(run("domname", {"0"}).out, "Domain-0\n");
  EXPECT_TRUE(server.requests().empty());
  EXPECT_EQ(run("domname", {"web"}).error, "kdom domname: 'web' is not a domain id (a number)");
}

TEST_F(XlCommands, ServerErrorsBecomeOneLine) {
  EXPECT_EQ(run("destroy", {"nope"}).error, "unknown domain 'nope'");
  FakeKdomd conflicted([](const RecordedRequest&) { return CannedReply{409, R"({"error": "name 'db' is taken"})"}; });
  EXPECT_EQ(kdom::cli::run(conflicted.path(), "rename", {"web", "db"}).error, "name 'db' is taken");
  FakeKdomd no_balloon([](const RecordedRequest&) {
    return CannedReply{409, R"x({"error": "domain 'web' has no balloon (balloon_stats or balloon= in its xl.cfg)"})x"};
  });
  EXPECT_EQ(kdom::cli::run(no_balloon.path(), "mem-set", {"web", "1g"}).error,
            "domain 'web' has no balloon (balloon_stats or balloon= in its xl.cfg)");
}

TEST(XlCommandsNoDaemon, MissingSocketIsNamed) {
  const Outcome outcome = run("/nonexistent-kdom-dir/kdomd.sock", "list", {});
  EXPECT_EQ(outcome.error,
            "cannot reach kdomd at /nonexistent-kdom-dir/kdomd.sock: No such file or directory (is kdomd running?)");
  EXPECT_NE(outcome.status, 0);
}

TEST(XlMemorySize, XlUnitsToMib) {
  EXPECT_EQ(parse_xl_memory_mib("512m"), 512u);
  EXPECT_EQ(parse_xl_memory_mib("512M"), 512u);
  EXPECT_EQ(parse_xl_memory_mib("2g"), 2048u);
  EXPECT_EQ(parse_xl_memory_mib("1t"), 1024u * 1024u);
  EXPECT_EQ(parse_xl_memory_mib("524288"), 512u);  // no unit: KiB, as xl
  EXPECT_EQ(parse_xl_memory_mib("1048576b"), 1u);
  EXPECT_EQ(parse_xl_memory_mib("1536k"), 1u);     // rounded down
  EXPECT_EQ(parse_xl_memory_mib("3145727b"), 2u);
}

TEST(XlMemorySize, BadSizesAreRefused) {
  const auto error_of = [](const std::string& text) {
    try {
      parse_xl_memory_mib(text);
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string("(accepted)");
  };
  const std::string units = "expected a whole number with an optional unit b, k, m, g or t (no unit: KiB)";
  EXPECT_EQ(error_of("12q"), "invalid memory size '12q': " + units);
  EXPECT_EQ(error_of(""), "invalid memory size '': " + units);
  EXPECT_EQ(error_of("m"), "invalid memory size 'm': " + units);
  EXPECT_EQ(error_of("-5m"), "invalid memory size '-5m': " + units);
  EXPECT_EQ(error_of("1.5g"), "invalid memory size '1.5g': " + units);
  EXPECT_EQ(error_of("12mb"), "invalid memory size '12mb': " + units);
  EXPECT_EQ(error_of("1023k"), "memory size '1023k' is less than 1 MiB");
  EXPECT_EQ(error_of("0"), "memory size '0' is less than 1 MiB");
  EXPECT_EQ(error_of("99999999999999999999g"), "memory size '99999999999999999999g' is too large");
  EXPECT_EQ(error_of("17000000000t"), "memory size '17000000000t' is too large");
}

TEST_F(XlCommands, MemSetWithABadSizeSendsNothing) {
  EXPECT_EQ(run("mem-set", {"web", "12q"}).error.rfind("invalid memory size '12q'", 0), 0u);
  EXPECT_TRUE(server.requests().empty());
}

TEST_F(XlCommands, UsageErrorsNameTheVerbsUsage) {
  const Outcome outcome = run("rename", {"web"});
  EXPECT_NE(outcome.error.find("NEWNAME is required"), std::string::npos) << outcome.error;
  EXPECT_NE(outcome.error.find("(usage: kdom rename DOM NEWNAME)"), std::string::npos) << outcome.error;
  EXPECT_EQ(outcome.error.find('\n'), std::string::npos);
  EXPECT_NE(run("destroy", {"web", "db"}).error.find("not expected"), std::string::npos);
  EXPECT_NE(run("list", {"--bogus"}).error.find("usage: kdom list"), std::string::npos);
  EXPECT_TRUE(server.requests().empty());
}

TEST_F(XlCommands, HelpNeedsNoDaemon) {
  const Outcome outcome = kdom::cli::run("/nonexistent-kdom-dir/kdomd.sock", "mem-set", {"--help"});
  EXPECT_EQ(outcome.status, 0);
  EXPECT_NE(outcome.out.find("usage: kdom mem-set DOM MEM"), std::string::npos) << outcome.out;
  EXPECT_NE(outcome.out.find("no unit: KiB"), std::string::npos);
}

TEST_F(XlCommands, ShutdownNeedsADomainAllOrControl) {
  EXPECT_EQ(run("shutdown", {}).error,
            "kdom shutdown needs DOM or -a (kdomd's domains), or needs --control PATH (a domain of kdom run)");
  EXPECT_EQ(run("shutdown", {"-a", "web"}).error, "kdom shutdown: give DOM or -a, not both");
  // --control is `kdom run`'s control socket: kdomd is not asked.
  const Outcome legacy = run("shutdown", {"--control", server.dir() + "/no.sock"});
  EXPECT_NE(legacy.error.find("no control socket"), std::string::npos) << legacy.error;
  EXPECT_TRUE(server.requests().empty());
}

TEST(XlCommandsShutdown, AllPressesEveryRunningDomainAndWaits) {
  std::atomic<int> lists{0};
  FakeKdomd server([&](const RecordedRequest& request) {
    if (request.target == "/v1/domains") {
      // The first list is before the presses; later ones see web going, then gone.
      const int seen = lists++;
      json stopped = kDb;
      stopped["state"] = "shutdown";
      json long_stopped = stopped;
      long_stopped["id"] = 9;
      if (seen == 0) return CannedReply{200, json{{"domains", {kWeb, kDb, long_stopped}}}.dump()};
      if (seen == 1) return CannedReply{200, json{{"domains", {kWeb, stopped}}}.dump()};
      return CannedReply{200, json{{"domains", {stopped}}}.dump()};
    }
    return CannedReply{200, R"({"id": 0, "state": "running"})"};
  });
  const Outcome outcome = run(server.path(), "shutdown", {"-a", "-w"});
  ASSERT_EQ(outcome.error, "");
  std::vector<std::string> posts;
  for (const auto& request : server.requests())
    if (request.method == "POST") posts.push_back(request.target + " " + request.body);
  EXPECT_EQ(posts, (Lines{"/v1/domains/3/shutdown {}", "/v1/domains/7/shutdown {}"}));
  EXPECT_GE(lists.load(), 3);
  EXPECT_NE(outcome.err.find("Domain 3 has been shut down"), std::string::npos) << outcome.err;
}

// An xl.cfg in a temporary file.
class XlCfgFile {
 public:
  explicit XlCfgFile(const std::string& text) {
    std::string pattern = std::filesystem::temp_directory_path().string() + "/kdom-xlcfg-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw SystemError("mkdtemp", errno);
    dir_ = pattern;
    std::ofstream(path()) << text;
  }
  ~XlCfgFile() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::string path() const { return dir_ + "/web.cfg"; }

 private:
  std::string dir_;
};

constexpr const char* kWebCfg =
    "name = \"web\"\n"
    "memory = 256\n"
    "vcpus = 2\n"
    "kernel = \"/boot/vmlinuz\"\n";

TEST(XlCommandsCreate, DryRunPrintsTheConfigWithoutADaemon) {
  XlCfgFile file(kWebCfg);
  const Outcome outcome = run("/nonexistent-kdom-dir/kdomd.sock", "create", {"-n", file.path(), "memory=512"});
  ASSERT_EQ(outcome.error, "");
  EXPECT_EQ(outcome.err, "Parsing config from " + file.path() + "\n");
  const json config = json::parse(outcome.out);
  EXPECT_EQ(config.at("name"), "web");
  EXPECT_EQ(config.at("memory_mib"), 512);  // the override wins
  EXPECT_EQ(config.at("vcpus"), 2);
  EXPECT_EQ(config.at("kernel"), "/boot/vmlinuz");
}

TEST(XlCommandsCreate, PostsTheConfigPausedWhenAsked) {
  XlCfgFile file(kWebCfg);
  FakeKdomd server([](const RecordedRequest&) { return CannedReply{201, kWeb.dump()}; });
  const Outcome outcome = run(server.path(), "create", {"-p", file.path()});
  ASSERT_EQ(outcome.error, "");
  ASSERT_EQ(server.requests().size(), 1u);
  const auto request = server.requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/v1/domains?paused=1");
  EXPECT_EQ(json::parse(request.body).at("memory_mib"), 256);
  EXPECT_NE(outcome.err.find("created domain web (id 3)"), std::string::npos) << outcome.err;
}

TEST(XlCommandsCreate, BadFilesAreNamed) {
  XlCfgFile file("name = \"web\"\nmemory = lots\nkernel = \"/k\"\n");
  const Outcome bad = run("/nonexistent-kdom-dir/kdomd.sock", "create", {"-n", file.path()});
  EXPECT_NE(bad.error.find(file.path() + ":2"), std::string::npos) << bad.error;
  const Outcome missing = run("/nonexistent-kdom-dir/kdomd.sock", "create", {"/nonexistent-kdom-dir/x.cfg"});
  EXPECT_NE(missing.error.find("/nonexistent-kdom-dir/x.cfg"), std::string::npos) << missing.error;
  EXPECT_NE(run("/x", "create", {"-p"}).error.find("kdom create needs an xl.cfg file"), std::string::npos);
}

TEST(XlCommandsConsole, FollowStreamsTheLog) {
  FakeKdomd server([](const RecordedRequest&) {
    CannedReply reply;
    reply.raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nboot\r\n3\r\ned\n\r\n0\r\n\r\n";
    return reply;
  });
  const Outcome outcome = run(server.path(), "console", {"--follow", "web"});
  ASSERT_EQ(outcome.error, "");
  EXPECT_EQ(outcome.out, "booted\n");
  EXPECT_EQ(server.requests().at(0).target, "/v1/domains/web/console?follow=1");
}

TEST(XlCommandsConsole, AttachCopiesBothWaysUntilTheConnectionEnds) {
  std::string guest_heard;
  FakeKdomd server([&](const RecordedRequest&) {
    CannedReply reply;
    reply.raw = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: kdom-console\r\n\r\n# ";
    reply.after_raw = [&](int fd) {
      char buffer[64];
      while (guest_heard.size() < 3) {
        const ssize_t n = ::read(fd, buffer, sizeof(buffer));
        if (n <= 0) return;
        guest_heard.append(buffer, static_cast<size_t>(n));
      }
      ASSERT_EQ(::write(fd, "ls\r\n", 4), 4);
    };
    return reply;
  });
  int keys[2], screen[2];
  ASSERT_EQ(::pipe(keys), 0);
  ASSERT_EQ(::pipe(screen), 0);
  UniqueFd keys_read(keys[0]), keys_write(keys[1]), screen_read(screen[0]), screen_write(screen[1]);
  // Not a terminal: Ctrl-] (0x1d) is an ordinary byte and goes to the guest.
  ASSERT_EQ(::write(keys_write.get(), "l\x1d\n", 3), 3);
  keys_write.reset();
  const Outcome outcome = run(server.path(), "console", {"web"}, keys_read.get(), screen_write.get());
  ASSERT_EQ(outcome.error, "");
  screen_write.reset();
  std::string shown;
  char buffer[64];
  for (ssize_t n; (n = ::read(screen_read.get(), buffer, sizeof(buffer))) > 0;) shown.append(buffer, n);
  EXPECT_EQ(shown, "# ls\r\n");
  EXPECT_EQ(guest_heard, "l\x1d\n");
  EXPECT_EQ(server.requests().at(0).upgrade, "kdom-console");
}

TEST(XlVerbs, KnowsItsVerbs) {
  for (const char* verb : {"create", "list", "info", "destroy", "shutdown", "reboot", "pause", "unpause", "rename",
                           "domid", "domname", "uptime", "console", "mem-set", "block-attach", "block-detach",
                           "block-list", "network-attach", "network-detach", "network-list", "save", "restore",
                           "migrate"})
    EXPECT_TRUE(is_xl_verb(verb)) << verb;
  EXPECT_FALSE(is_xl_verb("run"));
  EXPECT_FALSE(is_xl_verb("balloon"));
}

}  // namespace
}  // namespace kdom::cli

namespace kdom::cli {
namespace {

// kdomd's store for the CLI's store verb: /a = "", /a/b = "x", /a/b/c = "line\nbreak".
fake::CannedReply store_answer(const fake::RecordedRequest& request) {
  const std::map<std::string, json> nodes = {
      {"/", {{"path", "/"}, {"value", ""}, {"children", {"a"}}, {"permissions", "n0"}}},
      {"/a", {{"path", "/a"}, {"value", ""}, {"children", {"b"}}, {"permissions", "n0"}}},
      {"/a/b", {{"path", "/a/b"}, {"value", "x"}, {"children", {"c"}}, {"permissions", "n0 r5"}}},
      {"/a/b/c", {{"path", "/a/b/c"}, {"value", "line\nbreak"}, {"children", json::array()}, {"permissions", "n0"}}},
  };
  const std::string prefix = "/v1/store?path=";
  if (request.method == "GET" && request.target.rfind(prefix, 0) == 0) {
    std::string path = request.target.substr(prefix.size());
    for (size_t at; (at = path.find("%2F")) != std::string::npos;) path.replace(at, 3, "/");
    if (auto it = nodes.find(path); it != nodes.end()) return {200, it->second.dump()};
    return {404, json{{"error", "no store node " + path}}.dump()};
  }
  if (request.target.rfind("/v1/store/watch", 0) == 0) {
    fake::CannedReply reply;
    reply.raw = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 95\r\n\r\n"
                "event: watch\ndata: {\"path\":\"/a\"}\n\n"
                "id: 4\nevent: written\ndata: {\"path\":\"/a/b\",\"seq\":4}\n\n";
    return reply;
  }
  return {200, json{{"path", "/a"}}.dump()};
}

TEST(XlCommandsStore, EachSubcommandSendsItsRequestAndPrintsItsAnswer) {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> requests;
    std::string out;
  };
  const Case cases[] = {
      {{"read", "/a/b"}, {"GET /v1/store?path=%2Fa%2Fb"}, "x\n"},
      {{"write", "/a/b", "two words"}, {R"(PUT /v1/store?path=%2Fa%2Fb {"value":"two words"})"}, ""},
      {{"rm", "/a"}, {"DELETE /v1/store?path=%2Fa"}, ""},
      {{"chmod", "/a", "n0", "r5"}, {R"(PUT /v1/store?path=%2Fa {"permissions":"n0 r5"})"}, ""},
      {{"ls"},
       {"GET /v1/store?path=%2F", "GET /v1/store?path=%2Fa", "GET /v1/store?path=%2Fa%2Fb",
        "GET /v1/store?path=%2Fa%2Fb%2Fc"},
       "a = \"\"\n b = \"x\"\n  c = \"line\\nbreak\"\n"},
      {{"watch", "--count", "2", "/a"}, {"GET /v1/store/watch?path=%2Fa"}, "watch /a\nwritten /a/b\n"},
  };
  for (const auto& test : cases) {
    FakeKdomd server{store_answer};
    const Outcome outcome = run(server.path(), "store", test.args);
    EXPECT_EQ(outcome.error, "") << test.args[0];
    EXPECT_EQ(outcome.out, test.out) << test.args[0];
    std::vector<std::string> made;
    for (const auto& request : server.requests())
      made.push_back(request.method + " " + request.target + (request.body.empty() ? "" : " " + request.body));
    EXPECT_EQ(made, test.requests) << test.args[0];
  }
}

TEST(XlCommandsStore, BadUseAndRefusalsAreOneLine) {
  FakeKdomd server{store_answer};
  EXPECT_EQ(run(server.path(), "store", {"read", "relative"}).error,
            "kdom store: 'relative' is not an absolute path (it starts with /)");
  EXPECT_NE(run(server.path(), "store", {}).error.find("usage: kdom store read PATH"), std::string::npos);
  EXPECT_EQ(run(server.path(), "store", {"bogus", "/a"}).error,
            "kdom store: unknown command 'bogus' (read, write, ls, rm, chmod, watch)");
  EXPECT_NE(run(server.path(), "store", {"write", "/a"}).error.find("VALUE is required"), std::string::npos);
  EXPECT_TRUE(server.requests().empty());
  EXPECT_EQ(run(server.path(), "store", {"read", "/nope"}).error, "no store node /nope");
}

}  // namespace
}  // namespace kdom::cli

namespace kdom::cli {
namespace {

// kdomd's device lists for the hot-plug verbs; every other request gets {"devid":1,"mac":..}.
fake::CannedReply device_answer(const fake::RecordedRequest& request) {
  if (request.method == "GET" && request.target == "/v1/domains/web/disks")
    return {200, json{{"disks", {{{"vdev", "xvda"}, {"mode", "rw"}, {"state", "connected"}, {"target", "/img/a"}},
                                 {{"vdev", "xvdb"}, {"mode", "ro"}, {"state", "closing"}, {"target", "/img/b"}}}}}.dump()};
  if (request.method == "GET" && request.target == "/v1/domains/web/nics")
    return {200, json{{"vifs", {{{"devid", 1}, {"mac", "02:6b:64:01:02:03"}, {"state", "connected"},
                                 {"bridge", "br0"}, {"tap", "kdom3.1"}}}}}.dump()};
  if (request.method == "DELETE" && request.target.find("/disks/xvdq") != std::string::npos)
    return {404, json{{"error", "domain web has no disk 'xvdq'"}}.dump()};
  return {201, json{{"devid", 1}, {"mac", "02:6b:64:01:02:03"}}.dump()};
}

TEST(XlCommandsHotplug, EachVerbSendsItsRequestAndPrintsItsAnswer) {
  const std::string cwd = std::filesystem::current_path().string();
  struct Case {
    std::string verb;
    std::vector<std::string> args;
    std::string request;
    std::string out;
  };
  const Case cases[] = {
      {"block-attach", {"web", "vdev=xvdb,access=ro,target=/img/b"},
       R"(POST /v1/domains/web/disks {"read_only":true,"shared":false,"target":"/img/b","vdev":"xvdb"})", ""},
      // A spec in several words, and a relative target made absolute, as xl does.
      {"block-attach", {"web", "b.img", "raw", "xvdc"},
       R"(POST /v1/domains/web/disks {"read_only":false,"shared":false,"target":")" + cwd + R"(/b.img","vdev":"xvdc"})", ""},
      {"block-detach", {"web", "xvdb"}, "DELETE /v1/domains/web/disks/xvdb?wait=30", ""},
      {"block-detach", {"-f", "-w", "5", "3", "xvdb"}, "DELETE /v1/domains/3/disks/xvdb?wait=5&force=1", ""},
      {"network-attach", {"web", "bridge=br0,rate=1MB/s"},
       R"(POST /v1/domains/web/nics {"bridge":"br0","ip":"","rate_bytes_per_second":1000000,"tap":""})",
       "devid 1, MAC 02:6b:64:01:02:03\n"},
      {"network-detach", {"web", "02:6b:64:01:02:03"}, "DELETE /v1/domains/web/nics/02%3A6b%3A64%3A01%3A02%3A03?wait=30", ""},
      {"block-list", {"web"}, "GET /v1/domains/web/disks",
       "Vdev     Mode  State      Target\n"
       "xvda     rw    connected  /img/a\n"
       "xvdb     ro    closing    /img/b\n"},
      {"network-list", {"web"}, "GET /v1/domains/web/nics",
       "Idx  Mac Addr.         State      Bridge       TAP\n"
       "1    02:6b:64:01:02:03 connected  br0          kdom3.1\n"},
  };
  for (const auto& test : cases) {
    FakeKdomd server{device_answer};
    const Outcome outcome = run(server.path(), test.verb, test.args);
    EXPECT_EQ(outcome.error, "") << test.verb;
    EXPECT_EQ(outcome.status, 0) << test.verb;
    EXPECT_EQ(outcome.out, test.out) << test.verb;
    ASSERT_EQ(server.requests().size(), 1u) << test.verb;
    const auto request = server.requests()[0];
    EXPECT_EQ(request.method + " " + request.target + (request.body.empty() ? "" : " " + request.body), test.request);
  }
}

TEST(XlCommandsHotplug, BadSpecsSendNothingAndRefusalsAreOneLine) {
  FakeKdomd server{device_answer};
  EXPECT_EQ(run(server.path(), "block-attach", {"web", "vdev=xvdb,format=qcow2,target=/img/b"}).error,
            "command line: disk 'vdev=xvdb,format=qcow2,target=/img/b': format 'qcow2' is not supported (kdom uses raw "
            "images only)");
  EXPECT_EQ(run(server.path(), "network-attach", {"web", "bridge=br0,mac=01:00:00:00:00:01"}).error,
            "command line: vif 'bridge=br0,mac=01:00:00:00:00:01': MAC address '01:00:00:00:00:01' is a multicast "
            "address (the low bit of its first byte is set)");
  EXPECT_NE(run(server.path(), "block-detach", {"web"}).error.find("usage: kdom block-detach"), std::string::npos);
  EXPECT_NE(run(server.path(), "block-detach", {"-w", "0", "web", "xvdb"}).error.find("usage: kdom block-detach"),
            std::string::npos);
  EXPECT_TRUE(server.requests().empty());
  EXPECT_EQ(run(server.path(), "block-detach", {"web", "xvdq"}).error, "domain web has no disk 'xvdq'");
}

// kdom restore FILE [key=value...]: the file's absolute path, a bare name=NEWNAME as "name",
// the other settings as "overrides"; a malformed setting is refused before kdomd is asked.
TEST(XlCommandsRestore, SendsThePathTheNameAndTheOverrides) {
  FakeKdomd server([](const RecordedRequest&) { return CannedReply{201, json{{"id", 9}, {"name", "web2"}}.dump()}; });
  const std::string cwd = std::filesystem::current_path().string();
  Outcome outcome = run(server.path(), "restore", {"-p", "web.snap", "name=web2", "on_crash='preserve'"});
  EXPECT_EQ(outcome.error, "");
  EXPECT_EQ(outcome.err, "restored domain web2 (id 9), paused\n");
  outcome = run(server.path(), "restore", {"/srv/web.snap"});
  EXPECT_EQ(outcome.error, "");
  ASSERT_EQ(server.requests().size(), 2u);
  EXPECT_EQ(server.requests()[0].target, "/v1/restore?paused=1");
  EXPECT_EQ(json::parse(server.requests()[0].body),
            (json{{"path", cwd + "/web.snap"}, {"name", "web2"}, {"overrides", {"on_crash='preserve'"}}}));
  EXPECT_EQ(server.requests()[1].target, "/v1/restore");
  EXPECT_EQ(json::parse(server.requests()[1].body), (json{{"path", "/srv/web.snap"}}));

  EXPECT_EQ(run(server.path(), "restore", {"web.snap", "memory"}).error,
            "command line: expected '=' after 'memory' at the end of the input");
  EXPECT_EQ(run(server.path(), "restore", {"web.snap", "on_crash=preserve"}).error,
            "command line: the value of 'on_crash' must be a number, a list or a string in quotes, found 'preserve'");
  EXPECT_EQ(run(server.path(), "restore", {"web.snap", "name=a", "name=b"}).error, "kdom restore: name is given twice");
  EXPECT_EQ(server.requests().size(), 2u);
}

// kdom migrate: the request it sends, its figures, --json's lines, --cancel, and bad use
// refused before anything is sent.
TEST(XlCommandsMigrate, SendsTheTargetAndSettingsAndPrintsTheOutcome) {
  const json result{{"name", "web"}, {"target", "host2"}, {"destination_id", 4}, {"rounds", 3},
                    {"sent_bytes", 300 << 20}, {"seconds", 2.5}, {"downtime_ms", 42.0}};
  FakeKdomd server([&](const RecordedRequest& request) {
    if (request.method == "GET")  // the job, asked by --json while the migration runs
      return CannedReply{200, json{{"name", "web"}, {"job", {{"kind", "migrate"}, {"round", 2}}}}.dump()};
    if (request.target == "/v1/domains/web/migrate") {
      CannedReply reply{200, result.dump()};
      reply.delay = std::chrono::milliseconds(600);
      return reply;
    }
    return CannedReply{200, json{{"cancelled", true}}.dump()};
  });
  const std::string token_file = std::filesystem::temp_directory_path().string() + "/kdom-migrate-token-test";
  std::ofstream(token_file) << "  the-token-0123456789 \n";
  Outcome outcome = run(server.path(), "migrate", {"--downtime-ms", "20", "--max-bandwidth", "100", "--token-file",
                                                   token_file, "web", "host2"});
  std::filesystem::remove(token_file);
  EXPECT_EQ(outcome.error, "");
  EXPECT_EQ(outcome.err,
            "migrated web to host2 (domain 4 there): 300.0 MiB in 3 rounds, 2.50 s; the guest stood still 42 ms\n");
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(json::parse(server.requests()[0].body),
            (json{{"target", "host2"}, {"downtime_ms", 20}, {"max_rounds", 30}, {"max_bandwidth_mib", 100},
                  {"auto_converge", true}, {"token", "the-token-0123456789"}}));

  outcome = run(server.path(), "migrate", {"--json", "--no-auto-converge", "web", "host2:9000"});
  EXPECT_EQ(outcome.error, "");
  const auto& posted = server.requests();
  const auto to_9000 = std::find_if(posted.begin(), posted.end(), [](const auto& request) {
    return request.target == "/v1/domains/web/migrate" && request.body.find("host2:9000") != std::string::npos;
  });
  ASSERT_NE(to_9000, posted.end());
  EXPECT_EQ(json::parse(to_9000->body).value("auto_converge", true), false);
  std::istringstream lines(outcome.out);
  std::vector<json> events;
  for (std::string line; std::getline(lines, line);) events.push_back(json::parse(line));
  ASSERT_GE(events.size(), 2u) << outcome.out;
  EXPECT_EQ(events.front(), (json{{"event", "progress"}, {"job", {{"kind", "migrate"}, {"round", 2}}}}));
  EXPECT_EQ(events.size(), 2u) << "a job that did not change is not printed again: " << outcome.out;
  EXPECT_EQ(events.back(), (json{{"event", "migrated"}, {"result", result}}));

  outcome = run(server.path(), "migrate", {"--cancel", "web"});
  EXPECT_EQ(outcome.error, "");
  EXPECT_EQ(outcome.err, "cancelled the migration of web; it runs on here\n");
  EXPECT_EQ(server.requests().back().target, "/v1/domains/web/migrate/cancel");

  const size_t sent = server.requests().size();
  EXPECT_EQ(run(server.path(), "migrate", {"web"}).error, "kdom migrate needs DOM and HOST (see kdom migrate --help)");
  EXPECT_EQ(run(server.path(), "migrate", {"--cancel", "web", "host2"}).error, "kdom migrate --cancel needs DOM (only)");
  EXPECT_NE(run(server.path(), "migrate", {"--downtime-ms", "0", "web", "h"}).error.find("--downtime-ms"), std::string::npos);
  EXPECT_EQ(run(server.path(), "migrate", {"--token-file", "/nonexistent/t", "web", "h"}).error,
            "kdom migrate: cannot read the token file '/nonexistent/t'");
  EXPECT_EQ(server.requests().size(), sent);
}

TEST(MigrationLine, RoundsThenTheHandover) {
  EXPECT_EQ(migration_line("migrating web to h", json{{"kind", "migrate"}, {"round", 0}}), "migrating web to h: starting");
  EXPECT_EQ(migration_line("migrating web to h", json{{"kind", "migrate"},
                                                      {"phase", "precopy"},
                                                      {"round", 3},
                                                      {"sent_bytes", 412 << 20},
                                                      {"rate_bytes_per_s", 95 << 20},
                                                      {"dirty_bytes_per_s", 12 << 20},
                                                      {"remaining_bytes", 30 << 20},
                                                      {"expected_downtime_ms", 35.2}}),
            "migrating web to h: round 3, 412 MiB sent, 95 MiB/s, dirtying 12 MiB/s, 30 MiB left, ~35 ms pause");
  EXPECT_EQ(migration_line("m", json{{"phase", "precopy"},
                                     {"round", 5},
                                     {"sent_bytes", 600 << 20},
                                     {"rate_bytes_per_s", 16 << 20},
                                     {"dirty_bytes_per_s", 9 << 20},
                                     {"remaining_bytes", 8 << 20},
                                     {"expected_downtime_ms", 500},
                                     {"throttle_percent", 40}}),
            "m: round 5, 600 MiB sent, 16 MiB/s, dirtying 9 MiB/s, 8 MiB left, ~500 ms pause, vCPUs throttled 40%");
  EXPECT_EQ(migration_line("m", json{{"phase", "handover"}, {"round", 4}, {"sent_bytes", 420 << 20}}),
            "m: round 4, 420 MiB sent; paused for the last round");
}

}  // namespace
}  // namespace kdom::cli
