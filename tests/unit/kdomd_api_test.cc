// kdomd's API and supervisor without KVM: the routes against docs/openapi.json, error statuses,
// and the supervisor's process handling with a fake VMM (a script that says it is ready and
// waits, or one that fails at once); restore with xl.cfg overrides; the events the supervisor
// publishes; the HTTP server itself over a real Unix socket, with an event stream whose reader
// is stuck.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "base/sse.h"
#include "cli/api_client.h"
#include "config/domain_config.h"
#include "eventually.h"
#include "base/unique_fd.h"
#include "snapshot/snapshot_source.h"
#include "snapshot/stream.h"
#include "toolstack/api.h"
#include "toolstack/http_server.h"
#include "toolstack/migration_listener.h"
#include "toolstack/registry.h"
#include "toolstack/store_persistence.h"
#include "toolstack/supervisor.h"

#ifndef KDOM_SOURCE_DIR
#error "KDOM_SOURCE_DIR must be defined by the build"
#endif

namespace kdom::toolstack {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class KdomdApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/kdomd-api-test.XXXXXX";
    dir_ = mkdtemp(pattern);
    kernel_ = dir_ + "/kernel";
    std::ofstream(kernel_) << "not really a kernel";
    write_vmm("#!/bin/sh\n[ \"$1\" = run ] && [ \"$2\" = --config ] || exit 2\necho ready >&3\nexec 3>&-\nexec sleep 600\n");
    start_daemon();
  }
  void start_daemon() {
    registry_ = std::make_unique<Registry>(dir_ + "/state");
    store_ = std::make_unique<Store>(store_nodes_from(*registry_), store_persistence_in(*registry_));
    supervisor_ = std::make_unique<Supervisor>(*registry_, *store_, DaemonPaths{dir_ + "/run", dir_ + "/log", dir_ + "/vmm"});
    api_ = std::make_unique<Api>(*supervisor_, *store_);
  }
  void stop_daemon() {
    api_.reset();
    supervisor_.reset();
    store_.reset();
    registry_.reset();
  }
  void TearDown() override {
    for (const auto& record : registry_->all())
      if (record.pid > 0) ::kill(record.pid, SIGKILL);
    stop_daemon();
    fs::remove_all(dir_);
  }
  void write_vmm(const std::string& script) {
    std::ofstream(dir_ + "/vmm") << script;
    ::chmod((dir_ + "/vmm").c_str(), 0755);
  }
  // `target` may have a query ("?a=1&b=2", not percent-encoded).
  HttpReply call(const std::string& method, const std::string& target, const std::string& body = "") {
    HttpRequest request;
    request.method = method;
    const size_t question = target.find('?');
    request.path = target.substr(0, question);
    if (question != std::string::npos) {
      std::istringstream query(target.substr(question + 1));
      for (std::string pair; std::getline(query, pair, '&');) {
        const size_t equals = pair.find('=');
        request.query[pair.substr(0, equals)] = equals == std::string::npos ? "" : pair.substr(equals + 1);
      }
    }
    request.body = body;
    return api_->handle(request);
  }
  json config(const std::string& name) {
    return {{"name", name}, {"kernel", kernel_}, {"memory_mib", 32}};
  }

  std::string dir_, kernel_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<Api> api_;
};

TEST_F(KdomdApiTest, EveryRouteIsInTheOpenApiDocumentAndTheReverse) {
  std::ifstream file(std::string(KDOM_SOURCE_DIR) + "/docs/openapi.json");
  ASSERT_TRUE(file) << "docs/openapi.json is missing";
  const json document = json::parse(file);
  std::set<std::string> documented, served;
  for (const auto& [path, operations] : document.at("paths").items())
    for (const auto& [method, operation] : operations.items())
      if (method != "parameters") {
        std::string upper = method;
        for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        documented.insert(upper + " " + path);
      }
  for (const auto& route : api_->routes()) {
    // The document names the path parameter {dom} as the routes do.
    served.insert(route.method + " " + route.pattern);
  }
  EXPECT_EQ(served, documented);
}

// The hot-plug routes' refusals, each before anything changes: the fake VMM has no control
// socket, so a request that got as far as the VMM fails too, and the config stays as it was.
TEST_F(KdomdApiTest, HotplugRefusesBadRequestsAndChangesNothing) {
  std::ofstream(dir_ + "/disk.img") << "a disk";
  json web = config("web");
  web["disks"] = {{{"target", dir_ + "/disk.img"}}};
  web["vifs"] = {{{"tap", "tap9"}}};
  ASSERT_EQ(call("POST", "/v1/domains", web.dump()).status, 201u);
  // Names were assigned at create: the first free xvdX, a MAC, devid 0.
  const json recorded = json::parse(call("GET", "/v1/domains/web").body)["config"];
  EXPECT_EQ(recorded["disks"][0]["vdev"], "xvda");
  EXPECT_EQ(recorded["vifs"][0]["devid"], 0);
  EXPECT_EQ(recorded["vifs"][0]["mac"].get<std::string>().substr(0, 9), "02:6b:64:");
  const json vm = json::parse(std::ifstream(dir_ + "/run/domains/1/vm.json"));
  EXPECT_EQ(vm["disks"][0]["id"], "xvda");
  EXPECT_EQ(vm["nets"][0]["id"], "vif0");
  EXPECT_EQ(vm["nets"][0]["tap"], "tap9");

  struct Case {
    std::string method, target, body;
    unsigned status;
    std::string error;
  };
  const Case cases[] = {
      {"POST", "/v1/domains/nope/disks", R"({"target":"/x"})", 404, "no domain 'nope'"},
      {"POST", "/v1/domains/web/disks", R"({"target":")" + dir_ + R"(/missing.img"})", 400, "does not exist"},
      {"POST", "/v1/domains/web/disks", R"({"target":")" + dir_ + R"(/disk.img","vdev":"xvdb"})", 409,
       "is attached to domain web already (as xvda)"},
      {"POST", "/v1/domains/web/disks", R"({"target":")" + dir_ + R"(/kernel","vdev":"xvda"})", 409,
       "already has a disk 'xvda'"},
      {"POST", "/v1/domains/web/disks", R"({"target":")" + dir_ + R"(/kernel","vdev":"bad"})", 400, "not like xvdb"},
      {"POST", "/v1/domains/web/disks", R"({"target":"/x","format":"qcow2"})", 400, "unknown key"},
      {"POST", "/v1/domains/web/disks", "[1]", 400, ""},
      {"DELETE", "/v1/domains/web/disks/xvdq", "", 404, "has no disk 'xvdq'"},
      {"DELETE", "/v1/domains/web/disks/xvda?wait=forever", "", 400, "wait must be a whole number"},
      {"POST", "/v1/domains/web/nics", R"({"ip":"10.0.0.2"})", 400, "needs bridge="},
      {"POST", "/v1/domains/web/nics", R"({"tap":"tap8","mac":"01:00:00:00:00:01"})", 400, "multicast"},
      {"POST", "/v1/domains/web/nics", R"({"tap":"tap8","mac":")" + recorded["vifs"][0]["mac"].get<std::string>() + R"("})",
       409, "already has a NIC with MAC"},
      {"DELETE", "/v1/domains/web/nics/7", "", 404, "has no NIC '7'"},
      // Good requests, but the VMM cannot be asked: the error says so, nothing is recorded.
      {"POST", "/v1/domains/web/nics", R"({"tap":"tap8"})", 400, "control socket"},
      {"DELETE", "/v1/domains/web/disks/xvda", "", 400, "control socket"},
  };
  for (const auto& test : cases) {
    const HttpReply reply = call(test.method, test.target, test.body);
    EXPECT_EQ(reply.status, test.status) << test.method << " " << test.target << ": " << reply.body;
    EXPECT_NE(reply.body.find(test.error), std::string::npos) << test.method << " " << test.target << ": " << reply.body;
  }
  EXPECT_EQ(json::parse(call("GET", "/v1/domains/web").body)["config"], recorded);
  // The lists show the config; the VMM's states are unknown when it does not answer.
  const json disks = json::parse(call("GET", "/v1/domains/web/disks").body)["disks"];
  ASSERT_EQ(disks.size(), 1u);
  EXPECT_EQ(disks[0]["vdev"], "xvda");
  EXPECT_EQ(disks[0]["mode"], "rw");
  EXPECT_EQ(disks[0]["state"], "unknown");
  const json nics = json::parse(call("GET", "/v1/domains/web/nics").body)["vifs"];
  ASSERT_EQ(nics.size(), 1u);
  EXPECT_EQ(nics[0]["tap"], "tap9");
}

TEST_F(KdomdApiTest, CreateListInfoDestroyWithAFakeVmm) {
  HttpReply created = call("POST", "/v1/domains", config("web").dump());
  ASSERT_EQ(created.status, 201u) << created.body;
  const json info = json::parse(created.body);
  EXPECT_EQ(info["name"], "web");
  EXPECT_EQ(info["state"], "running");
  EXPECT_GE(info["id"].get<int>(), 1);
  const int pid = info["pid"].get<int>();
  ASSERT_GT(pid, 0);
  EXPECT_EQ(::kill(pid, 0), 0);
  EXPECT_EQ(info["uuid"].get<std::string>().size(), 36u);

  // The VMM was given its whole config as one JSON document.
  const json vm = json::parse(std::ifstream(dir_ + "/run/domains/" + std::to_string(info["id"].get<int>()) + "/vm.json"));
  EXPECT_EQ(vm["kernel_path"], kernel_);
  EXPECT_EQ(vm["memory_mib"], 32);

  EXPECT_EQ(call("GET", "/v1/domains/web").status, 200u);
  EXPECT_EQ(call("GET", "/v1/domains/" + std::to_string(info["id"].get<int>())).status, 200u);
  const json list = json::parse(call("GET", "/v1/domains").body);
  ASSERT_EQ(list["domains"].size(), 1u);

  HttpReply duplicate = call("POST", "/v1/domains", config("web").dump());
  EXPECT_EQ(duplicate.status, 409u) << duplicate.body;
  EXPECT_EQ(json::parse(call("GET", "/v1/domains").body)["domains"].size(), 1u);

  HttpReply destroyed = call("DELETE", "/v1/domains/web");
  ASSERT_EQ(destroyed.status, 200u) << destroyed.body;
  EXPECT_EQ(call("GET", "/v1/domains/web").status, 404u);
  EXPECT_TRUE(json::parse(call("GET", "/v1/domains").body)["domains"].empty());
  for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_NE(::kill(pid, 0), 0) << "the VMM process is still there";
  EXPECT_FALSE(fs::exists(dir_ + "/run/domains/" + std::to_string(info["id"].get<int>())));

  // Ids are never reused.
  HttpReply again = call("POST", "/v1/domains", config("web").dump());
  ASSERT_EQ(again.status, 201u);
  EXPECT_GT(json::parse(again.body)["id"].get<int>(), info["id"].get<int>());
}

TEST_F(KdomdApiTest, AVmmThatFailsToStartLeavesNothingBehind) {
  write_vmm("#!/bin/sh\necho 'kdom: error: disk image is locked by another domain' >&2\nexit 1\n");
  HttpReply reply = call("POST", "/v1/domains", config("broken").dump());
  EXPECT_EQ(reply.status, 400u);
  EXPECT_NE(reply.body.find("did not start: kdom: error: disk image is locked"), std::string::npos) << reply.body;
  EXPECT_TRUE(registry_->all().empty());
  EXPECT_TRUE(fs::is_empty(dir_ + "/run/domains"));
}

TEST_F(KdomdApiTest, BadRequestsGetClearStatuses) {
  EXPECT_EQ(call("GET", "/v1/domains/nosuch").status, 404u);
  EXPECT_EQ(call("POST", "/v1/domains/nosuch/pause").status, 404u);
  EXPECT_EQ(call("GET", "/v2/whatever").status, 404u);
  EXPECT_EQ(call("PUT", "/v1/domains").status, 405u);
  HttpReply bad_json = call("POST", "/v1/domains", "{not json");
  EXPECT_EQ(bad_json.status, 400u);
  EXPECT_NE(bad_json.body.find("not valid JSON"), std::string::npos);
  EXPECT_EQ(call("POST", "/v1/domains", "[1,2]").status, 400u);
  json missing_kernel = config("nokernel");
  missing_kernel["kernel"] = dir_ + "/missing";
  HttpReply no_kernel = call("POST", "/v1/domains", missing_kernel.dump());
  EXPECT_EQ(no_kernel.status, 400u);
  EXPECT_NE(no_kernel.body.find("does not exist"), std::string::npos) << no_kernel.body;
  json unknown_key = config("x");
  unknown_key["memroy"] = 1;
  EXPECT_EQ(call("POST", "/v1/domains", unknown_key.dump()).status, 400u);
  EXPECT_TRUE(registry_->all().empty());
  EXPECT_EQ(call("POST", "/v1/domains/0/pause").status, 400u);  // Domain-0 is the host
}

TEST_F(KdomdApiTest, ADaemonRestartReadoptsLiveVmmsAndSettlesDeadOnes) {
  ASSERT_EQ(call("POST", "/v1/domains", config("stays").dump()).status, 201u);
  json dies = config("dies");
  dies["on_crash"] = "preserve";
  ASSERT_EQ(call("POST", "/v1/domains", dies.dump()).status, 201u);
  const int stays_pid = json::parse(call("GET", "/v1/domains/stays").body)["pid"].get<int>();
  const int dies_pid = json::parse(call("GET", "/v1/domains/dies").body)["pid"].get<int>();
  // The daemon goes away (its VMMs are not killed), one VMM dies meanwhile, a new daemon starts.
  stop_daemon();
  ::kill(dies_pid, SIGKILL);
  for (int i = 0; i < 100 && ::kill(dies_pid, 0) == 0; ++i) {
    ::waitpid(dies_pid, nullptr, WNOHANG);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  start_daemon();
  supervisor_->recover();
  const json stays = json::parse(call("GET", "/v1/domains/stays").body);
  EXPECT_EQ(stays["pid"], stays_pid);
  EXPECT_EQ(stays["state"], "running");
  const json dead = json::parse(call("GET", "/v1/domains/dies").body);
  EXPECT_EQ(dead["state"], "crashed");
  EXPECT_NE(dead["last_exit"].get<std::string>().find("while kdomd was not running"), std::string::npos) << dead.dump();
  // The re-adopted one is still under control: destroy reaches it.
  ASSERT_EQ(call("DELETE", "/v1/domains/stays").status, 200u);
  for (int i = 0; i < 100 && ::kill(stays_pid, 0) == 0; ++i) {
    ::waitpid(stays_pid, nullptr, WNOHANG);  // this test process is still its parent
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(::kill(stays_pid, 0), 0);
}

// The domain state machine's refusals: a domain that has stopped (shut down or crashed, kept by
// on_poweroff/on_crash=preserve) can be renamed and destroyed, and every request that needs its
// VMM is a conflict (409) naming the state, never an error from a VMM that is not there.
TEST_F(KdomdApiTest, AStoppedDomainRefusesWhatNeedsItsVmm) {
  // The fake VMM powers off (its exit file says so) on SIGUSR1, and dies of SIGKILL.
  write_vmm(
      "#!/bin/sh\n[ \"$1\" = run ] || exit 2\nexit_file=\n"
      "while [ $# -gt 0 ]; do [ \"$1\" = --exit-file ] && exit_file=$2; shift; done\n"
      "trap 'echo {\\\"reason\\\":\\\"poweroff\\\",\\\"code\\\":0,\\\"message\\\":\\\"guest powered off\\\","
      "\\\"exit_status\\\":0} >\"$exit_file\"; exit 0' USR1\n"
      "echo ready >&3\nexec 3>&-\nwhile :; do sleep 1 & wait $!; done\n");
  json off = config("off");
  off["on_poweroff"] = "preserve";
  json dead = config("dead");
  dead["on_crash"] = "preserve";
  ASSERT_EQ(call("POST", "/v1/domains", off.dump()).status, 201u);
  ASSERT_EQ(call("POST", "/v1/domains", dead.dump()).status, 201u);
  const auto state_of = [&](const std::string& name) {
    return json::parse(call("GET", "/v1/domains/" + name).body).value("state", std::string("?"));
  };
  const auto wait_for_state = [&](const std::string& name, const std::string& state) {
    for (int i = 0; i < 500 && state_of(name) != state; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return state_of(name);
  };
  ::kill(json::parse(call("GET", "/v1/domains/off").body)["pid"].get<int>(), SIGUSR1);
  ::kill(json::parse(call("GET", "/v1/domains/dead").body)["pid"].get<int>(), SIGKILL);
  ASSERT_EQ(wait_for_state("off", "shutdown"), "shutdown");
  ASSERT_EQ(wait_for_state("dead", "crashed"), "crashed");

  for (const std::string name : {"off", "dead"}) {
    const std::string state = state_of(name);
    for (const auto& [path, body] : std::vector<std::pair<std::string, json>>{
             {"pause", json::object()},
             {"unpause", json::object()},
             {"shutdown", json::object()},
             {"reboot", json::object()},
             {"mem-set", {{"memory_mib", 16}}},
         }) {
      HttpReply reply = call("POST", "/v1/domains/" + name + "/" + path, body.dump());
      EXPECT_EQ(reply.status, 409u) << name << " " << path << ": " << reply.body;
      EXPECT_NE(reply.body.find("is " + state), std::string::npos) << name << " " << path << ": " << reply.body;
    }
    EXPECT_EQ(state_of(name), state) << "a refused request changed the state";
  }
  ASSERT_EQ(call("POST", "/v1/domains/off/rename", json{{"name", "off2"}}.dump()).status, 200u);
  EXPECT_EQ(state_of("off2"), "shutdown");
  EXPECT_EQ(call("DELETE", "/v1/domains/off2").status, 200u);
  EXPECT_EQ(call("DELETE", "/v1/domains/dead").status, 200u);
  EXPECT_TRUE(registry_->all().empty());
}

// A saved domain as far as kdomd reads it before the VMM takes over: the host-facts record, then
// the config record with kdomd's config of the domain (what save() gives the VMM).
std::string write_snapshot(const std::string& path, const json& domain_config) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  EXPECT_TRUE(fd.valid()) << path;
  snapshot::StreamWriter writer(fd.get(), path);
  writer.write(snapshot::RecordType::kHostFacts, snapshot::json_body({{"kdom_version", "test"}}));
  writer.write(snapshot::RecordType::kConfig,
               snapshot::json_body({{"vm", json::object()}, {"toolstack", domain_config}}));
  writer.finish();
  return path;
}

// A fake VMM that writes its arguments to DIR/vmm-args, then says it is ready and waits.
std::string recording_vmm(const std::string& dir) {
  return "#!/bin/sh\necho \"$@\" >" + dir + "/vmm-args\necho ready >&3\nexec 3>&-\nexec sleep 600\n";
}

constexpr const char* kSavedUuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

// kdom restore FILE name=... on_crash=...: the saved domain comes back with what the overrides
// changed, its VMM told to restore the file.
TEST_F(KdomdApiTest, RestoreAppliesOverridesTheSavedDomainCanTake) {
  write_vmm(recording_vmm(dir_));
  json saved = config("web");
  saved["uuid"] = kSavedUuid;
  const std::string path = write_snapshot(dir_ + "/web.snap", saved);
  const json info = supervisor_->restore(path, false, {"name='x'", "on_crash='preserve'"});
  EXPECT_EQ(info["name"], "x");
  EXPECT_EQ(info["state"], "running");
  EXPECT_EQ(info["uuid"], kSavedUuid);
  EXPECT_EQ(info["config"]["on_crash"], "preserve");
  EXPECT_EQ(info["config"]["on_poweroff"], "destroy");
  EXPECT_EQ(info["memory_mib"], 32);
  std::string args;
  std::getline(std::ifstream(dir_ + "/vmm-args"), args);
  EXPECT_NE(args.find("--restore " + path), std::string::npos) << args;
  ASSERT_EQ(registry_->all().size(), 1u);
  EXPECT_EQ(registry_->all()[0].name, "x");

  // Over the API, with the older "name" (kdom restore FILE name=NEWNAME): the saved domain "x"
  // is still there, so the restored one gets a uuid of its own.
  HttpReply again = call("POST", "/v1/restore",
                         json{{"path", path}, {"name", "y"}, {"overrides", {"on_reboot='destroy'"}}}.dump());
  ASSERT_EQ(again.status, 201u) << again.body;
  const json second = json::parse(again.body);
  EXPECT_EQ(second["name"], "y");
  EXPECT_NE(second["uuid"], kSavedUuid);
  EXPECT_EQ(second["config"]["on_reboot"], "destroy");
  EXPECT_EQ(registry_->all().size(), 2u);
}

// While the VMM reads the snapshot, the restoring domain's job says how far it has read (its
// file offset, of the file's size); the job is gone once the VMM is ready.
TEST_F(KdomdApiTest, ARestoresProgressIsTheDomainsJobUntilItsVmmIsReady) {
  write_vmm("#!/bin/sh\n"
            "while [ $# -gt 0 ]; do [ \"$1\" = --restore ] && file=$2; shift; done\n"
            "exec 5<\"$file\"\n"
            "dd bs=100 count=1 <&5 >/dev/null 2>&1\n"
            "while [ ! -e " + dir_ + "/go ]; do sleep 0.01; done\n"
            "echo ready >&3\nexec 3>&-\nexec sleep 600\n");
  const std::string path = write_snapshot(dir_ + "/web.snap", config("web"));
  const uint64_t size = std::filesystem::file_size(path);
  ASSERT_GT(size, 100u);
  auto restored = std::async(std::launch::async, [&] { return call("POST", "/v1/restore", json{{"path", path}}.dump()); });
  json job;
  EXPECT_TRUE(eventually([&] {
    const json listed = json::parse(call("GET", "/v1/domains").body);
    if (listed["domains"].empty()) return false;
    job = listed["domains"][0].value("job", json());
    return job.is_object() && job.value("done_bytes", uint64_t{0}) == 100;
  })) << job;
  EXPECT_EQ(job, (json{{"kind", "restore"}, {"path", path}, {"done_bytes", 100}, {"total_bytes", size}}));
  std::ofstream(dir_ + "/go").put('\n');
  const HttpReply reply = restored.get();
  ASSERT_EQ(reply.status, 201u) << reply.body;
  EXPECT_FALSE(json::parse(reply.body).contains("job")) << reply.body;
}

// A change the restored machine cannot take, or a bad body, is refused (400, one line) before
// anything is recorded or started.
TEST_F(KdomdApiTest, RestoreRefusesWhatTheSavedDomainCannotTakeAndStartsNothing) {
  write_vmm(recording_vmm(dir_));
  json saved = config("web");
  saved["uuid"] = kSavedUuid;
  const std::string path = write_snapshot(dir_ + "/web.snap", saved);
  try {
    supervisor_->restore(path, false, {"memory=999"});
    ADD_FAILURE() << "memory=999 was taken";
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "memory cannot change on a restore (the saved domain has 32 MiB)");
  }
  const std::pair<json, std::string> cases[] = {
      {{{"path", path}, {"overrides", {"memory=999"}}}, "memory cannot change on a restore (the saved domain has 32 MiB)"},
      {{{"path", path}, {"overrides", {"memory"}}}, "command line: expected '=' after 'memory' at the end of the input"},
      {{{"path", path}, {"overrides", {"memroy=64"}}}, "command line: unknown key 'memroy'"},
      {{{"path", path}, {"overrides", {"name='x'", "disk=['/img/a.img']"}}},
       "the number of disks (disk=) cannot change on a restore (the saved domain has none)"},
      {{{"path", path}, {"overrides", "memory=999"}}, "\"overrides\" must be a list of \"key=value\" strings"},
      {{{"path", path}, {"overrides", {64}}}, "\"overrides\" must be a list of \"key=value\" strings"},
      {{{"path", path}, {"name", "y"}, {"overrides", {"name='z'"}}},
       "the new name is given twice: as \"name\" and as the override name="},
      {{{"path", path}, {"override", {"name='z'"}}},
       "unknown key 'override' (a restore takes \"path\", \"overrides\" and \"name\")"},
  };
  for (const auto& [body, message] : cases) {
    HttpReply reply = call("POST", "/v1/restore", body.dump());
    EXPECT_EQ(reply.status, 400u) << body;
    EXPECT_EQ(json::parse(reply.body).value("error", ""), message) << body;
  }
  EXPECT_TRUE(registry_->all().empty());
  EXPECT_TRUE(fs::is_empty(dir_ + "/run/domains"));
  EXPECT_FALSE(fs::exists(dir_ + "/vmm-args")) << "a VMM was started";
}

// Every lifecycle change the supervisor makes or learns of reaches an event reader, in order.
TEST_F(KdomdApiTest, TheSupervisorPublishesEveryLifecycleChange) {
  auto reader = supervisor_->events().subscribe();
  ASSERT_EQ(call("POST", "/v1/domains", config("web").dump()).status, 201u);
  json dies = config("dies");
  dies["on_crash"] = "preserve";
  ASSERT_EQ(call("POST", "/v1/domains", dies.dump()).status, 201u);
  ASSERT_EQ(call("POST", "/v1/domains/web/rename", json{{"name", "www"}}.dump()).status, 200u);
  ::kill(json::parse(call("GET", "/v1/domains/dies").body)["pid"].get<int>(), SIGKILL);
  ASSERT_TRUE(eventually([&] { return json::parse(call("GET", "/v1/domains/dies").body)["state"] == "crashed"; }));
  ASSERT_EQ(call("DELETE", "/v1/domains/www").status, 200u);
  std::vector<json> events;
  for (json event; reader->next(event, std::chrono::milliseconds(0)) == EventBus::Subscription::Next::kEvent;)
    events.push_back(event);
  std::vector<std::string> seen;
  for (const json& event : events) seen.push_back(event["event"].get<std::string>() + " " + event["name"].get<std::string>());
  EXPECT_EQ(seen, (std::vector<std::string>{"created web", "running web", "created dies", "running dies", "renamed www",
                                            "crashed dies", "destroyed www"}));
  ASSERT_EQ(events.size(), 7u);
  EXPECT_EQ(events[4]["old_name"], "web");
  EXPECT_EQ(events[5]["reason"], "crash");
  EXPECT_EQ(events[5]["action"], "preserve");
  EXPECT_NE(events[5]["message"].get<std::string>().find("SIGKILL"), std::string::npos) << events[5];
  for (size_t i = 1; i < events.size(); ++i) EXPECT_EQ(events[i]["seq"].get<uint64_t>(), events[0]["seq"].get<uint64_t>() + i);
  EXPECT_EQ(events[0]["id"], events[1]["id"]);
}

// The store over the API: a domain's keys as the supervisor keeps them, the host's own keys,
// transactions, and the refusals' statuses.
TEST_F(KdomdApiTest, TheStoreHoldsEachDomainsKeysAndTheHostsOwn) {
  const json web = json::parse(call("POST", "/v1/domains", config("web").dump()).body);
  const std::string id = std::to_string(web["id"].get<int>());
  const std::string home = "/local/domain/" + id;
  auto node = [&](const std::string& path) { return call("GET", "/v1/store?path=" + path); };
  HttpReply name = node(home + "/name");
  ASSERT_EQ(name.status, 200u) << name.body;
  EXPECT_EQ(json::parse(name.body)["value"], "web");
  EXPECT_EQ(json::parse(node(home + "/state").body)["value"], "running");
  EXPECT_EQ(json::parse(node(home + "/memory/target").body)["value"], "32768");
  EXPECT_EQ(json::parse(node(home + "/vm").body)["value"], "/vm/" + web["uuid"].get<std::string>());
  EXPECT_EQ(json::parse(node(home).body)["permissions"], "n0 r" + id) << "the guest reads its keys";
  EXPECT_EQ(json::parse(node(home + "/data").body)["permissions"], "n" + id) << "and owns data/";
  ASSERT_EQ(call("POST", "/v1/domains/web/rename", json{{"name", "www"}}.dump()).status, 200u);
  EXPECT_EQ(json::parse(node(home + "/name").body)["value"], "www");

  // The host's keys: written, listed, removed; a transaction's changes appear on commit; a
  // conflicting one is refused and changes nothing.
  ASSERT_EQ(call("PUT", "/v1/store?path=/tool/app/key", json{{"value", "v1"}}.dump()).status, 200u);
  EXPECT_EQ(json::parse(node("/tool/app").body)["children"], json::array({"key"}));
  const uint64_t t1 = json::parse(call("POST", "/v1/store/transactions").body)["transaction"].get<uint64_t>();
  const uint64_t t2 = json::parse(call("POST", "/v1/store/transactions").body)["transaction"].get<uint64_t>();
  EXPECT_EQ(json::parse(call("GET", "/v1/store?path=/tool/app/key&transaction=" + std::to_string(t1)).body)["value"], "v1");
  ASSERT_EQ(call("PUT", "/v1/store?path=/tool/app/key", json{{"value", "v2"}, {"transaction", t1}}.dump()).status, 200u);
  ASSERT_EQ(call("PUT", "/v1/store?path=/tool/app/key", json{{"value", "v3"}, {"transaction", t2}}.dump()).status, 200u);
  EXPECT_EQ(json::parse(node("/tool/app/key").body)["value"], "v1");
  EXPECT_EQ(call("POST", "/v1/store/transactions/" + std::to_string(t1) + "/commit").status, 200u);
  EXPECT_EQ(call("POST", "/v1/store/transactions/" + std::to_string(t2) + "/commit").status, 409u);
  EXPECT_EQ(json::parse(node("/tool/app/key").body)["value"], "v2");
  EXPECT_EQ(call("DELETE", "/v1/store/transactions/" + std::to_string(t2)).status, 404u) << "ended by its conflict";
  EXPECT_EQ(call("DELETE", "/v1/store/transactions/nope").status, 404u);
  EXPECT_EQ(call("DELETE", "/v1/store?path=/tool").status, 200u);
  EXPECT_EQ(node("/tool/app/key").status, 404u);
  EXPECT_EQ(call("PUT", "/v1/store?path=/perm", json{{"value", ""}, {"permissions", "n0 r7"}}.dump()).status, 200u);
  EXPECT_EQ(json::parse(node("/perm").body)["permissions"], "n0 r7");

  for (const auto& [status, method, target, body] :
       std::vector<std::tuple<unsigned, std::string, std::string, std::string>>{
           {400, "GET", "/v1/store", ""},
           {400, "GET", "/v1/store?path=/a//b", ""},
           {400, "GET", "/v1/store?path=relative", ""},
           {404, "GET", "/v1/store?path=/nope", ""},
           {404, "DELETE", "/v1/store?path=/nope", ""},
           {400, "DELETE", "/v1/store?path=/", ""},
           {400, "PUT", "/v1/store?path=/x", "{}"},
           {400, "PUT", "/v1/store?path=/x", R"({"value": 5})"},
           {400, "PUT", "/v1/store?path=/x", R"({"value": "v", "permissions": "q0"})"},
           {413, "PUT", "/v1/store?path=/x", json{{"value", std::string(Store::kHostValueBytes + 1, 'x')}}.dump()},
           {404, "PUT", "/v1/store?path=/x", R"({"value": "v", "transaction": 999})"},
           {404, "POST", "/v1/store/transactions/999/commit", ""},
       }) {
    const HttpReply reply = call(method, target, body);
    EXPECT_EQ(reply.status, status) << method << " " << target << ": " << reply.body;
    EXPECT_TRUE(json::parse(reply.body).contains("error")) << reply.body;
  }
  EXPECT_EQ(node("/x").status, 404u) << "a refused write made nothing";

  // The keys survive a daemon restart; a destroyed domain's go with it.
  stop_daemon();
  start_daemon();
  supervisor_->recover();
  EXPECT_EQ(json::parse(node(home + "/name").body)["value"], "www");
  EXPECT_EQ(json::parse(node("/perm").body)["permissions"], "n0 r7");
  ASSERT_EQ(call("DELETE", "/v1/domains/www").status, 200u);
  EXPECT_EQ(node(home).status, 404u);
  EXPECT_EQ(node("/vm/" + web["uuid"].get<std::string>()).status, 404u);
}

// GET /v1/events through the real server: a reader that never reads holds up neither the
// publisher nor another reader, and when it finally reads it finds what it got, then why it
// was dropped.
TEST_F(KdomdApiTest, AnEventStreamWithAStuckReaderHoldsUpNobody) {
  HttpServer server([this](const HttpRequest& request) { return api_->handle(request); });
  const std::string socket = dir_ + "/kdomd.sock";
  server.serve(listen_unix(socket, 0600, -1), "");
  const auto readers = [&] { return json::parse(call("GET", "/v1/host").body)["event_readers"].get<size_t>(); };

  const int stuck = ::socket(AF_UNIX, SOCK_STREAM, 0);
  const int small = 4096;
  ::setsockopt(stuck, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::connect(stuck, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const std::string request = "GET /v1/events HTTP/1.1\r\nHost: kdomd\r\n\r\n";
  ASSERT_EQ(::send(stuck, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  ASSERT_TRUE(eventually([&] { return readers() == 1; }));

  constexpr uint64_t kEvents = 3 * EventBus::kQueueLimit;
  std::vector<uint64_t> received;
  std::thread reading([&] {
    SseParser parser;
    cli::ApiClient(socket).stream_get("/v1/events?domain=7", [&](std::string_view data) {
      parser.feed(data, [&](const SseMessage& message) {
        EXPECT_EQ(message.event, "paused");
        received.push_back(json::parse(message.data)["seq"].get<uint64_t>());
      });
      return received.size() < kEvents;
    });
  });
  ASSERT_TRUE(eventually([&] { return readers() == 2; }));
  // In bursts the reading client keeps up with (half its queue), more in all than the stuck one
  // has room for.
  constexpr uint64_t kBurst = EventBus::kQueueLimit / 2;
  for (uint64_t burst = 0; burst < kEvents / kBurst; ++burst) {
    const auto started = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < kBurst; ++i) {
      supervisor_->events().publish("paused", {{"id", 7}, {"name", "seven"}});
      supervisor_->events().publish("paused", {{"id", 8}, {"name", "eight"}});  // not for ?domain=7
    }
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2)) << "publishing waited for a reader";
    EXPECT_TRUE(eventually([&] { return received.size() >= (burst + 1) * kBurst; })) << received.size();
  }
  reading.join();
  ASSERT_EQ(received.size(), kEvents);
  for (size_t i = 1; i < received.size(); ++i) ASSERT_EQ(received[i], received[i - 1] + 2) << "at " << i;
  EXPECT_TRUE(eventually([&] { return readers() == 0; }));

  std::string got;
  char buffer[65536];
  for (ssize_t n; (n = ::recv(stuck, buffer, sizeof(buffer), 0)) > 0;) got.append(buffer, static_cast<size_t>(n));
  ::close(stuck);
  EXPECT_NE(got.find("200 OK"), std::string::npos);
  EXPECT_NE(got.find("text/event-stream"), std::string::npos);
  const size_t overflow = got.find("event: overflow");
  ASSERT_NE(overflow, std::string::npos) << got.substr(0, 300);
  EXPECT_EQ(got.find("event: paused", overflow), std::string::npos) << "nothing after the overflow";
  EXPECT_NE(got.find("fell " + std::to_string(EventBus::kQueueLimit) + " events behind"), std::string::npos);
  server.stop();
}

// Migration requests refused before anything is sent: each a clear line, the domain untouched.
TEST_F(KdomdApiTest, MigrateRefusesBadRequests) {
  ASSERT_EQ(call("POST", "/v1/domains", config("m").dump()).status, 201u);
  const struct {
    std::string target, body;
    unsigned status;
    std::string says;
  } cases[] = {
      {"/v1/domains/m/migrate", "{}", 400, "a migration needs"},
      {"/v1/domains/m/migrate", R"({"target":""})", 400, "a migration needs"},
      {"/v1/domains/m/migrate", R"({"target":"h","speed":1})", 400, "unknown key 'speed'"},
      {"/v1/domains/m/migrate", R"({"target":"h","downtime_ms":0})", 400, "at least 1"},
      {"/v1/domains/m/migrate", R"({"target":"h","max_rounds":-1})", 400, "max_rounds\\\" must be a whole number up to 1000000"},
      {"/v1/domains/m/migrate", R"({"target":"h","token":5})", 400, "token\\\" must be a string"},
      {"/v1/domains/m/migrate", R"({"target":"h","auto_converge":1})", 400, "auto_converge\\\" must be true or false"},
      {"/v1/domains/m/migrate", R"({"target":"h:99999"})", 400, "the port must be 1-65535"},
      {"/v1/domains/m/migrate", R"({"target":"127.0.0.1:1"})", 400, "no migration token"},
      {"/v1/domains/m/migrate", R"({"target":"127.0.0.1:1","token":"t"})", 400, "cannot connect to the migration port 127.0.0.1:1"},
      {"/v1/domains/nope/migrate", R"({"target":"h"})", 404, "nope"},
      {"/v1/domains/m/migrate/cancel", "", 409, "is not migrating"},
  };
  for (const auto& c : cases) {
    const HttpReply reply = call("POST", c.target, c.body);
    EXPECT_EQ(reply.status, c.status) << c.body << ": " << reply.body;
    EXPECT_NE(reply.body.find(c.says), std::string::npos) << c.body << ": " << reply.body;
  }
  EXPECT_EQ(json::parse(call("GET", "/v1/domains/m").body)["state"], "running");
}

// A destination that refuses (the wrong token; a disk it cannot find): the source's domain runs
// on, the destination keeps nothing. Two real supervisors, the destination behind a real
// migration port on 127.0.0.1.
TEST_F(KdomdApiTest, MigrateToARefusingDestinationLeavesTheDomainRunning) {
  const std::string there = dir_ + "/there";
  Registry registry(there + "/state");
  Store store(store_nodes_from(registry), store_persistence_in(registry));
  Supervisor destination(registry, store, DaemonPaths{there + "/run", there + "/log", dir_ + "/vmm"});
  UniqueFd listener = listen_tcp("127.0.0.1:0");
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string port = std::to_string(ntohs(address.sin_port));
  const std::string token = "the-right-token-0123456789";
  MigrationListener migrations(std::move(listener), [&](UniqueFd connection) {
    destination.receive_migration(std::move(connection), token);
  });

  json m = config("m");
  m["disks"] = {{{"target", dir_ + "/m.img"}}};
  std::ofstream(dir_ + "/m.img") << std::string(4096, '\0');
  ASSERT_EQ(call("POST", "/v1/domains", m.dump()).status, 201u);
  HttpReply reply = call("POST", "/v1/domains/m/migrate",
                         json{{"target", "127.0.0.1:" + port}, {"token", "the-wrong-token-0123456789"}}.dump());
  EXPECT_EQ(reply.status, 400u);
  EXPECT_NE(reply.body.find("the destination refused the migration of m: a migration with the wrong token was refused"),
            std::string::npos)
      << reply.body;
  // The disk is not where the destination looks (this host's path is gone, as if not shared).
  fs::remove(dir_ + "/m.img");
  reply = call("POST", "/v1/domains/m/migrate", json{{"target", "127.0.0.1:" + port}, {"token", token}}.dump());
  EXPECT_EQ(reply.status, 400u);
  EXPECT_NE(reply.body.find("the destination refused the migration of m: disk '" + dir_ + "/m.img' does not exist"),
            std::string::npos)
      << reply.body;
  const json info = json::parse(call("GET", "/v1/domains/m").body);
  EXPECT_EQ(info["state"], "running");
  EXPECT_FALSE(info.contains("job"));
  EXPECT_EQ(destination.domain_count(), 0u);
}

// A raw HTTP exchange over a Unix socket: what a client that is not kdom's own may send.
std::string exchange(const std::string& path, const std::string& request) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) return "connect failed";
  (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  std::string reply;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0;) reply.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  return reply;
}

TEST(HttpServerTest, RefusesMalformedOversizedAndUnauthenticatedRequests) {
  char pattern[] = "/tmp/kdomd-http-test.XXXXXX";
  const std::string dir = mkdtemp(pattern);
  HttpServer server([](const HttpRequest& request) { return HttpReply::json(200, {{"path", request.path}}); });
  server.serve(listen_unix(dir + "/open.sock", 0600, -1), "");
  server.serve(listen_unix(dir + "/token.sock", 0600, -1), "0123456789abcdef0123");
  EXPECT_NE(exchange(dir + "/open.sock", "GET /v1/host HTTP/1.1\r\nHost: x\r\n\r\n").find("\"path\":\"/v1/host\""),
            std::string::npos);
  EXPECT_NE(exchange(dir + "/open.sock", "THIS IS NOT HTTP\r\n\r\n").find("400 Bad Request"), std::string::npos);
  const std::string big(HttpServer::kMaxBodyBytes + 1, 'x');
  EXPECT_NE(exchange(dir + "/open.sock", "POST /v1/domains HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                             std::to_string(big.size()) + "\r\n\r\n" + big)
                .find("413"),
            std::string::npos);
  EXPECT_NE(exchange(dir + "/token.sock", "GET /v1/host HTTP/1.1\r\nHost: x\r\n\r\n").find("401 Unauthorized"),
            std::string::npos);
  EXPECT_NE(exchange(dir + "/token.sock", "GET /v1/host HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n")
                .find("401"),
            std::string::npos);
  EXPECT_NE(exchange(dir + "/token.sock",
                     "GET /v1/host HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer 0123456789abcdef0123\r\n\r\n")
                .find("200 OK"),
            std::string::npos);
  // A second daemon on the same socket is refused; the first keeps serving.
  EXPECT_THROW(listen_unix(dir + "/open.sock", 0600, -1), Error);
  EXPECT_NE(exchange(dir + "/open.sock", "GET /x HTTP/1.1\r\nHost: x\r\n\r\n").find("200 OK"), std::string::npos);
  server.stop();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kdom::toolstack
