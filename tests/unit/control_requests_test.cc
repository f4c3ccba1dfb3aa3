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

TEST(ControlRequestsOps, UnknownOpListsTheKnownOnes) {
  FakeDomain domain;
  ControlRequests requests(nullptr, 512, domain.actions());
  const std::string error = reply_to(requests, R"({"op":"suspend"})")["error"];
  for (const char* op : {"unknown op 'suspend'", "balloon-set", "balloon-stats", "power-button", "pause", "unpause",
                         "status", "reboot"})
    EXPECT_NE(error.find(op), std::string::npos) << op << " in " << error;
}

}  // namespace
}  // namespace kdom::vmm
