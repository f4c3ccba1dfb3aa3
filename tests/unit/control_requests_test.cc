// Tests of the control ops that act on the domain (pause, unpause, status, reboot) through
// ControlRequests with fake domain actions: no KVM needed.
#include "vmm/control_requests.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "base/error.h"

namespace kdom::vmm {
namespace {

using nlohmann::json;

// A fake domain: records what it was asked and can refuse.
struct FakeDomain {
  bool paused = false;
  int pauses = 0, unpauses = 0, reboots = 0;
  bool refuse = false;

  DomainActions actions() {
    DomainActions actions;
    actions.press_power_button = [] { return true; };
    actions.pause = [this] {
      if (refuse) throw Error("the domain is stopping");
      ++pauses;
      paused = true;
    };
    actions.unpause = [this] {
      ++unpauses;
      paused = false;
    };
    actions.status = [this] { return DomainStatus{paused, 3, 12.5}; };
    actions.reboot = [this] { ++reboots; };
    actions.stats = [] { return json{{"vcpus", {{{"vcpu", 0}, {"tid", 42}}}}, {"disks", json::array()}}; };
    return actions;
  }
};

json reply_to(ControlRequests& requests, const std::string& line) { return json::parse(requests.handle_line(line)); }

TEST(ControlRequestsOps, PauseAndUnpauseReachTheDomain) {
  FakeDomain domain;
  ControlRequests requests(nullptr, 512, domain.actions());
  EXPECT_EQ(reply_to(requests, R"({"op":"pause"})"), json({{"ok", true}}));
  EXPECT_TRUE(domain.paused);
  EXPECT_EQ(reply_to(requests, R"({"op":"status"})")["state"], "paused");
  EXPECT_EQ(reply_to(requests, R"({"op":"unpause"})"), json({{"ok", true}}));
  EXPECT_FALSE(domain.paused);
  EXPECT_EQ(domain.pauses, 1);
  EXPECT_EQ(domain.unpauses, 1);
}

TEST(ControlRequestsOps, StatusReportsTheDomain) {
  FakeDomain domain;
  ControlRequests requests(nullptr, 768, domain.actions());
  const json reply = reply_to(requests, R"({"op":"status"})");
  EXPECT_EQ(reply["ok"], true);
  EXPECT_EQ(reply["pid"], getpid());
  EXPECT_EQ(reply["state"], "running");
  EXPECT_EQ(reply["memory_mib"], 768);
  EXPECT_EQ(reply["vcpus"], 3);
  EXPECT_DOUBLE_EQ(reply["uptime_s"].get<double>(), 12.5);
}

TEST(ControlRequestsOps, DeviceOpsGoToTheDomainsHotplug) {
  FakeDomain domain;
  DomainActions actions = domain.actions();
  std::vector<std::string> seen;
  actions.devices = [&](const std::string& op, const json& request) -> json {
    seen.push_back(op);
    if (request.contains("id") && request["id"] == "nope") throw Error("the domain has no disk or NIC with id 'nope'");
    return {{"ok", true}, {"op", op}};
  };
  ControlRequests requests(nullptr, 512, actions);
  for (const char* op : {"disk-attach", "net-attach", "device-detach", "devices"})
    EXPECT_EQ(reply_to(requests, std::string(R"({"op":")") + op + R"("})")["op"], op);
  EXPECT_EQ(seen, (std::vector<std::string>{"disk-attach", "net-attach", "device-detach", "devices"}));
  EXPECT_EQ(reply_to(requests, R"({"op":"device-detach","id":"nope"})"),
            json({{"ok", false}, {"error", "device-detach: the domain has no disk or NIC with id 'nope'"}}));
  ControlRequests without(nullptr, 512, domain.actions());
  EXPECT_EQ(reply_to(without, R"({"op":"devices"})")["error"], "this domain cannot change its devices");
}

TEST(ControlRequestsOps, RebootAsksTheDomainToStop) {
  FakeDomain domain;
  ControlRequests requests(nullptr, 512, domain.actions());
  EXPECT_EQ(reply_to(requests, R"({"op":"reboot"})"), json({{"ok", true}}));
  EXPECT_EQ(domain.reboots, 1);
}

TEST(ControlRequestsOps, StatsHasTheDomainsCountersAndTheBalloons) {
  FakeDomain domain;
  ControlRequests requests(nullptr, 512, domain.actions());
  const json reply = reply_to(requests, R"({"op":"stats"})");
  EXPECT_EQ(reply["ok"], true);
  EXPECT_EQ(reply["vcpus"][0]["tid"], 42);
  EXPECT_FALSE(reply.contains("balloon")) << "no balloon device";
}

TEST(ControlRequestsOps, ARefusalBecomesAnErrorReply) {
  FakeDomain domain;
  domain.refuse = true;
  ControlRequests requests(nullptr, 512, domain.actions());
  const json reply = reply_to(requests, R"({"op":"pause"})");
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"], "pause: the domain is stopping");
}

TEST(ControlRequestsOps, MissingActionsGetAnErrorReply) {
  ControlRequests requests(nullptr, 512, DomainActions{});
  for (const char* op : {"pause", "unpause", "status", "reboot", "power-button", "stats"}) {
    const json reply = reply_to(requests, std::string(R"({"op":")") + op + "\"}");
    EXPECT_EQ(reply["ok"], false) << op;
    EXPECT_TRUE(reply["error"].is_string()) << op;
  }
}

// The hand-over ops of a live migration: disk-locks needs a boolean "hold" and answers with
// the number of disks; the domain's refusal is the error; announce answers with the NICs.
TEST(ControlRequestsOps, DiskLocksAndAnnounceReachTheDomain) {
  FakeDomain domain;
  DomainActions actions = domain.actions();
  std::vector<bool> holds;
  actions.disk_locks = [&](bool hold) -> size_t {
    if (!hold && !domain.paused) throw Error("the domain is running: pause it before its disks' locks are let go");
    holds.push_back(hold);
    return 2;
  };
  int announced = 0;
  actions.announce = [&]() -> size_t { return ++announced, 3; };
  ControlRequests requests(nullptr, 512, actions);
  EXPECT_EQ(reply_to(requests, R"({"op":"disk-locks","hold":false})"),
            json({{"ok", false},
                  {"error", "disk-locks: the domain is running: pause it before its disks' locks are let go"}}));
  domain.paused = true;
  EXPECT_EQ(reply_to(requests, R"({"op":"disk-locks","hold":false})"), json({{"ok", true}, {"disks", 2}}));
  EXPECT_EQ(reply_to(requests, R"({"op":"disk-locks","hold":true})"), json({{"ok", true}, {"disks", 2}}));
  EXPECT_EQ(holds, (std::vector<bool>{false, true}));
  for (const char* bad : {R"({"op":"disk-locks"})", R"({"op":"disk-locks","hold":1})", R"({"op":"disk-locks","hold":"true"})"})
    EXPECT_EQ(reply_to(requests, bad),
              json({{"ok", false},
                    {"error", "disk-locks: the request needs \"hold\": true (take the locks) or false (let them go)"}}))
        << bad;
  EXPECT_EQ(holds.size(), 2u);
  EXPECT_EQ(reply_to(requests, R"({"op":"announce"})"), json({{"ok", true}, {"nics", 3}}));
  EXPECT_EQ(announced, 1);
  ControlRequests without(nullptr, 512, domain.actions());
  EXPECT_EQ(reply_to(without, R"({"op":"disk-locks","hold":true})")["ok"], false);
  EXPECT_EQ(reply_to(without, R"({"op":"announce"})")["ok"], false);
}

TEST(ControlRequestsOps, StatusSaysWhetherTheDisksAreLocked) {
  DomainActions actions;
  actions.status = [] {
    DomainStatus status;
    status.paused = true;
    status.disks_locked = false;
    return status;
  };
  ControlRequests requests(nullptr, 512, actions);
  const json reply = reply_to(requests, R"({"op":"status"})");
  EXPECT_EQ(reply["state"], "paused");
  EXPECT_EQ(reply["disks_locked"], false);
}

TEST(ControlRequestsOps, UnknownOpListsTheKnownOnes) {
  FakeDomain domain;
  ControlRequests requests(nullptr, 512, domain.actions());
  const std::string error = reply_to(requests, R"({"op":"suspend"})")["error"];
  for (const char* op : {"unknown op 'suspend'", "balloon-set", "balloon-stats", "power-button", "pause", "unpause",
                         "status", "reboot", "disk-locks", "announce"})
    EXPECT_NE(error.find(op), std::string::npos) << op << " in " << error;
}

}  // namespace
}  // namespace kdom::vmm
