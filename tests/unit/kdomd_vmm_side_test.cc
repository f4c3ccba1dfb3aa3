// kdomd's supervisor against a VMM whose control side is real: the fake VMM process (a script)
// waits for its control socket and says it is ready, while this test serves that socket with
// the VMM's own ControlRequests, ControlSocket and EventStream, so the supervisor's control
// requests and event subscription meet the code a real VMM runs, without KVM.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "devices/virtio/balloon.h"
#include "eventually.h"
#include "toolstack/api.h"
#include "toolstack/registry.h"
#include "toolstack/store_persistence.h"
#include "toolstack/supervisor.h"
#include "vmm/control_client.h"
#include "vmm/control_requests.h"
#include "vmm/control_socket.h"
#include "vmm/event_stream.h"

namespace kdom::toolstack {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The control side of one domain's VMM, served in this process at `control_path`.
class VmmControlSide {
 public:
  explicit VmmControlSide(const std::string& control_path, uint64_t memory_mib)
      : requests_(balloon, memory_mib, actions()), control_(control_path, loop_, requests_, &stream) {
    loop_.start();
  }
  ~VmmControlSide() { loop_.stop(); }

  // What the guest's balloon driver does once it holds `mib` MiB.
  void driver_holds(uint64_t mib) {
    const auto pages = static_cast<uint32_t>(mib * (1 << 20) / devices::virtio::kBalloonPageSize);
    uint8_t bytes[4];
    std::memcpy(bytes, &pages, sizeof(bytes));
    balloon->write_config(devices::virtio::kBalloonConfigActual, bytes);
  }


 private:
  vmm::EventLoop loop_;  // first: what it serves is made after it and goes before it

 public:
  std::shared_ptr<devices::virtio::BalloonDevice> balloon =
      std::make_shared<devices::virtio::BalloonDevice>(devices::virtio::BalloonDeviceConfig{});
  vmm::EventStream stream{loop_};
  std::atomic<bool> paused{false};
  // What the VMM's save does (on its control loop's thread); set before the save is asked for.
  std::function<json(const std::string& path, const std::string& then, const json& toolstack)> on_save;

 private:
  vmm::DomainActions actions() {
    balloon->set_target_reached_handler([this](uint32_t actual, uint32_t target) {
      const uint64_t pages_per_mib = (1 << 20) / devices::virtio::kBalloonPageSize;
      stream.publish("balloon-target-reached",
                     {{"actual_mib", actual / pages_per_mib}, {"target_mib", target / pages_per_mib}});
    });
    vmm::DomainActions actions;
    actions.pause = [this] {
      if (!paused.exchange(true)) stream.publish("paused");
    };
    actions.unpause = [this] {
      if (paused.exchange(false)) stream.publish("unpaused");
    };
    actions.status = [this] {
      vmm::DomainStatus status;
      status.paused = paused;
      status.vcpus = 1;
      return status;
    };
    actions.save = [this](const std::string& path, const std::string& then, const json& toolstack) {
      if (!on_save) throw Error("this test's VMM does not save");
      return on_save(path, then, toolstack);
    };
    return actions;
  }

  vmm::ControlRequests requests_;
  vmm::ControlSocket control_;
};

class KdomdVmmSideTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/kdomd-vmm-side-test.XXXXXX";
    dir_ = mkdtemp(pattern);
    kernel_ = dir_ + "/kernel";
    std::ofstream(kernel_) << "not really a kernel";
    // Ready once its control socket is there (the test serves it), as a real VMM is.
    std::ofstream(dir_ + "/vmm") << "#!/bin/sh\n"
                                    "[ \"$1\" = run ] && [ \"$2\" = --config ] || exit 2\n"
                                    "socket=\"$(dirname \"$3\")/control.sock\"\n"
                                    "i=0\n"
                                    "while [ ! -S \"$socket\" ]; do sleep 0.01; i=$((i + 1)); [ $i -lt 1000 ] || exit 3; done\n"
                                    "echo ready >&3\nexec 3>&-\nexec sleep 600\n";
    ::chmod((dir_ + "/vmm").c_str(), 0755);
    start_daemon();
  }
  void TearDown() override {
    for (const auto& record : registry_->all())
      if (record.pid > 0) ::kill(record.pid, SIGKILL);
    stop_daemon();
    fs::remove_all(dir_);
  }
  void start_daemon() {
    registry_ = std::make_unique<Registry>(dir_ + "/state");
    store_ = std::make_unique<Store>(store_nodes_from(*registry_), store_persistence_in(*registry_));
    supervisor_ = std::make_unique<Supervisor>(*registry_, *store_, DaemonPaths{dir_ + "/run", dir_ + "/log", dir_ + "/vmm"});
    api_ = std::make_unique<Api>(*supervisor_, *store_);
  }
  // As kdomd going away: its VMMs stay.
  void stop_daemon() {
    api_.reset();
    supervisor_.reset();
    store_.reset();
    registry_.reset();
  }
  HttpReply call(const std::string& method, const std::string& path, const json& body = nullptr) {
    HttpRequest request;
    request.method = method;
    request.path = path;
    if (!body.is_null()) request.body = body.dump();
    return api_->handle(request);
  }
  json info(const std::string& dom) { return json::parse(call("GET", "/v1/domains/" + dom).body); }
  // Creates domain `name` (32 MiB) and serves its VMM's control side; returns that side.
  std::unique_ptr<VmmControlSide> create(const std::string& name, json extra = json::object()) {
    json config = {{"name", name}, {"kernel", kernel_}, {"memory_mib", 32}};
    config.update(extra);
    auto created = std::async(std::launch::async, [&] { return call("POST", "/v1/domains", config); });
    // The supervisor writes vm.json once it has cleaned the run directory, right before it
    // starts the VMM: the socket made after that stays.
    std::string run_dir;
    EXPECT_TRUE(eventually([&] {
      if (!fs::exists(dir_ + "/run/domains")) return false;
      for (const auto& entry : fs::directory_iterator(dir_ + "/run/domains"))
        if (fs::exists(entry.path() / "vm.json") && !fs::exists(entry.path() / "control.sock") &&
            !served_.count(entry.path().string()))
          run_dir = entry.path().string();
      return !run_dir.empty();
    }));
    served_.insert(run_dir);
    auto side = std::make_unique<VmmControlSide>(run_dir + "/control.sock", 32);
    const HttpReply reply = created.get();
    EXPECT_EQ(reply.status, 201u) << reply.body;
    return side;
  }
  // Ends the domain's VMM process as a VMM ends (or is killed).
  void end_vmm(const std::string& dom) {
    const int pid = info(dom)["pid"].get<int>();
    ASSERT_GT(pid, 0);
    ::kill(pid, SIGKILL);
  }

  std::string dir_, kernel_;
  std::set<std::string> served_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<Api> api_;
};

TEST_F(KdomdVmmSideTest, AfterMemSetTheDomainIsStillSettledAndDestroyed) {
  auto vmm = create("small", {{"on_crash", "preserve"}});
  const HttpReply set = call("POST", "/v1/domains/small/mem-set", {{"memory_mib", 16}});
  ASSERT_EQ(set.status, 200u) << set.body;
  EXPECT_EQ(json::parse(set.body)["target_mib"], 16);
  EXPECT_EQ(vmm->balloon->target_pages(), 16u * 256);  // 16 MiB taken back of 32
  // Renamed, it keeps its target.
  ASSERT_EQ(call("POST", "/v1/domains/small/rename", {{"name", "smaller"}}).status, 200u);
  EXPECT_EQ(info("smaller")["target_mib"], 16);
  // Its end is settled by its action (the daemon reads the record's config again then).
  end_vmm("smaller");
  EXPECT_TRUE(eventually([&] { return info("smaller")["state"] == "crashed"; })) << info("smaller").dump();
  const HttpReply destroyed = call("DELETE", "/v1/domains/smaller");
  EXPECT_EQ(destroyed.status, 200u) << destroyed.body;
  EXPECT_TRUE(registry_->all().empty());
}

// While a save runs, the domain's info shows how far it has come (the VMM's save-progress
// events); the job is gone once the save has ended.
TEST_F(KdomdVmmSideTest, ASavesProgressIsTheDomainsJobWhileItRuns) {
  auto vmm = create("big");
  EXPECT_TRUE(eventually([&] { return vmm->stream.subscriber_count() == 1; }));
  std::promise<void> release;
  auto released = release.get_future().share();
  vmm->on_save = [&](const std::string&, const std::string&, const json&) {
    vmm->stream.publish("save-progress", {{"done_bytes", 8 << 20}, {"total_bytes", 32 << 20}});
    released.wait();
    return json{{"bytes", 4096}, {"seconds", 0.5}, {"downtime_s", 0.5}};
  };
  EXPECT_FALSE(info("big").contains("job"));
  auto saved = std::async(std::launch::async, [&] {
    return call("POST", "/v1/domains/big/save", {{"path", dir_ + "/big.snap"}, {"then", "running"}});
  });
  EXPECT_TRUE(eventually([&] {
    const json job = info("big").value("job", json());
    return job == json{{"kind", "save"}, {"done_bytes", 8 << 20}, {"total_bytes", 32 << 20}};
  })) << info("big").dump();
  release.set_value();
  const HttpReply reply = saved.get();
  EXPECT_EQ(reply.status, 200u) << reply.body;
  EXPECT_FALSE(info("big").contains("job")) << info("big").dump();
  // An event that comes late, after the save's end, makes no job.
  vmm->stream.publish("save-progress", {{"done_bytes", 32 << 20}, {"total_bytes", 32 << 20}});
  EXPECT_TRUE(eventually([&] { return vmm->stream.subscriber_count() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(info("big").contains("job")) << info("big").dump();
}

TEST_F(KdomdVmmSideTest, TheVmmsEventsReachTheDomain) {
  auto vmm = create("ev", {{"on_poweroff", "preserve"}});
  // Subscribed once the VMM said it was ready.
  EXPECT_TRUE(eventually([&] { return vmm->stream.subscriber_count() == 1; }));
  const std::string control = dir_ + "/run/domains/" + std::to_string(info("ev")["id"].get<int>()) + "/control.sock";

  // mem-set gives the target at once; the actual memory follows the guest's balloon.
  ASSERT_EQ(call("POST", "/v1/domains/ev/mem-set", {{"memory_mib", 20}}).status, 200u);
  EXPECT_EQ(info("ev")["target_mib"], 20);
  EXPECT_EQ(info("ev")["actual_mib"], 32);
  vmm->driver_holds(12);
  EXPECT_TRUE(eventually([&] { return info("ev")["actual_mib"] == 20; })) << info("ev").dump();
  const json listed = json::parse(call("GET", "/v1/domains").body)["domains"][0];
  EXPECT_EQ(listed["actual_mib"], 20);

  // A pause made past the daemon, on the control socket, is recorded; so is the unpause.
  vmm::control_request(control, {{"op", "pause"}});
  EXPECT_TRUE(eventually([&] { return info("ev")["state"] == "paused"; })) << info("ev").dump();
  vmm::control_request(control, {{"op", "unpause"}});
  EXPECT_TRUE(eventually([&] { return info("ev")["state"] == "running"; })) << info("ev").dump();

  // Why it stopped comes from its stopping event: this VMM writes no exit file, and its
  // process is killed, which alone would read as a crash (and on_crash destroys it).
  vmm->stream.publish("stopping",
                      {{"reason", "poweroff"}, {"code", 0}, {"message", "guest powered off"}, {"exit_status", 0}});
  end_vmm("ev");
  EXPECT_TRUE(eventually([&] { return info("ev")["state"] == "shutdown"; })) << info("ev").dump();
  EXPECT_EQ(info("ev")["last_exit"], "guest powered off");
  EXPECT_EQ(info("ev")["actual_mib"], 32);  // no VMM, no balloon
}

TEST_F(KdomdVmmSideTest, ARestartedDaemonListensAgainAndLearnsTheBalloon) {
  auto vmm = create("stays", {{"on_reboot", "preserve"}});
  EXPECT_TRUE(eventually([&] { return vmm->stream.subscriber_count() == 1; }));
  stop_daemon();
  EXPECT_TRUE(eventually([&] { return vmm->stream.subscriber_count() == 0; }));
  // While no daemon listens, the guest's balloon takes 8 MiB.
  vmm->balloon->set_target_pages(8 * 256);
  vmm->driver_holds(8);
  start_daemon();
  supervisor_->recover();
  EXPECT_TRUE(eventually([&] { return vmm->stream.subscriber_count() == 1; }));
  EXPECT_EQ(info("stays")["state"], "running");
  EXPECT_EQ(info("stays")["actual_mib"], 24);
  vmm->stream.publish("stopping", {{"reason", "reboot"}, {"message", "guest requested a reboot"}});
  const int pid = info("stays")["pid"].get<int>();
  end_vmm("stays");
  EXPECT_TRUE(eventually([&] { return info("stays")["state"] == "shutdown"; })) << info("stays").dump();
  EXPECT_EQ(info("stays")["last_exit"], "guest requested a reboot");
  ::waitpid(pid, nullptr, 0);  // this test, not the new daemon, is its parent
}

}  // namespace
}  // namespace kdom::toolstack
