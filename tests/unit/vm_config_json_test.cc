// Tests of VmConfig <-> JSON: a config with every device survives the round trip, and bad
// documents (unknown keys, wrong types, bad values, an fd) are refused naming the key path.
#include "vmm/vm_config_json.h"

#include <gtest/gtest.h>

#include <functional>

#include "base/error.h"

namespace kdom::vmm {
namespace {

using nlohmann::json;

VmConfig every_device() {
  VmConfig config;
  config.kernel_path = "/k/vmlinux";
  config.initrd_path = "/k/initrd";
  config.cmdline = "console=ttyS0 quiet";
  config.memory_mib = 1024;
  config.vcpus = 4;
  config.console = {ConsoleKind::kSocket, "/run/kdom/c.sock"};
  DiskConfig root{"/img/root.raw", false, "ROOT1", "root", 4, {1000000, 500}, 64};
  DiskConfig data{"/img/data.raw", true, "", "", 1, {}, 0, true};
  config.disks = {root, data};
  config.entropy = true;
  config.hvc = VirtioConsoleConfig{{ConsoleKind::kFile, "/tmp/hvc.log"}, "hvc"};
  config.vsock = VsockConfig{42, "/run/kdom/v.sock", "vsock0"};
  config.balloon = BalloonConfig{128, 5, true, true, "balloon0"};
  config.control_path = "/run/kdom/ctl.sock";
  NetConfig net;
  net.tap = "tap0";
  net.mac = std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0xab};
  net.id = "eth0";
  net.rate_limit = {2000000, 3000};
  NetConfig plain;
  plain.tap = "tap1";
  config.nets = {net, plain};
  return config;
}

std::string error_of(const json& document) {
  try {
    vm_config_from_json(document);
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(VmConfigJson, RoundTripKeepsEveryField) {
  const VmConfig original = every_device();
  const json document = to_json(original);
  // Through text, as a supervisor would pass it.
  const VmConfig back = vm_config_from_json(json::parse(document.dump()));
  EXPECT_EQ(back.kernel_path, original.kernel_path);
  EXPECT_EQ(back.initrd_path, original.initrd_path);
  EXPECT_EQ(back.cmdline, original.cmdline);
  EXPECT_EQ(back.memory_mib, 1024u);
  EXPECT_EQ(back.vcpus, 4u);
  EXPECT_EQ(back.console.kind, ConsoleKind::kSocket);
  EXPECT_EQ(back.console.path, "/run/kdom/c.sock");
  ASSERT_EQ(back.disks.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const DiskConfig &a = back.disks[i], &b = original.disks[i];
    EXPECT_EQ(a.path, b.path);
    EXPECT_EQ(a.read_only, b.read_only);
    EXPECT_EQ(a.serial, b.serial);
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.queues, b.queues);
    EXPECT_EQ(a.rate_limit.bytes_per_second, b.rate_limit.bytes_per_second);
    EXPECT_EQ(a.rate_limit.ops_per_second, b.rate_limit.ops_per_second);
    EXPECT_EQ(a.poll_us, b.poll_us);
    EXPECT_EQ(a.shared, b.shared);
  }
  EXPECT_TRUE(back.entropy);
  ASSERT_TRUE(back.hvc);
  EXPECT_EQ(back.hvc->backend.kind, ConsoleKind::kFile);
  EXPECT_EQ(back.hvc->backend.path, "/tmp/hvc.log");
  EXPECT_EQ(back.hvc->id, "hvc");
  ASSERT_TRUE(back.vsock);
  EXPECT_EQ(back.vsock->guest_cid, 42u);
  EXPECT_EQ(back.vsock->socket_path, "/run/kdom/v.sock");
  EXPECT_EQ(back.vsock->id, "vsock0");
  ASSERT_TRUE(back.balloon);
  EXPECT_EQ(back.balloon->target_mib, 128u);
  EXPECT_EQ(back.balloon->stats_seconds, 5u);
  EXPECT_TRUE(back.balloon->deflate_on_oom);
  EXPECT_TRUE(back.balloon->free_page_reporting);
  EXPECT_EQ(back.balloon->id, "balloon0");
  EXPECT_EQ(back.control_path, "/run/kdom/ctl.sock");
  ASSERT_EQ(back.nets.size(), 2u);
  EXPECT_EQ(back.nets[0].tap, "tap0");
  EXPECT_EQ(back.nets[0].fd, -1);
  EXPECT_EQ(back.nets[0].mac, original.nets[0].mac);
  EXPECT_EQ(back.nets[0].id, "eth0");
  EXPECT_EQ(back.nets[0].rate_limit.bytes_per_second, 2000000u);
  EXPECT_EQ(back.nets[0].rate_limit.ops_per_second, 3000u);
  EXPECT_FALSE(back.nets[1].mac);
  // And the document itself is stable: writing what was read gives the same JSON.
  EXPECT_EQ(to_json(back), document);
}

TEST(VmConfigJson, MinimalDocumentTakesTheDefaults) {
  const VmConfig config = vm_config_from_json(json{{"kernel_path", "/k/bzImage"}});
  EXPECT_EQ(config.kernel_path, "/k/bzImage");
  EXPECT_FALSE(config.initrd_path);
  EXPECT_EQ(config.memory_mib, 256u);
  EXPECT_EQ(config.vcpus, 1u);
  EXPECT_EQ(config.console.kind, ConsoleKind::kStdio);
  EXPECT_TRUE(config.disks.empty());
  EXPECT_FALSE(config.balloon);
}

TEST(VmConfigJson, RefusesUnknownKeysNamingThePath) {
  json document = to_json(every_device());
  document["memroy_mib"] = 5;
  EXPECT_EQ(error_of(document), "config: unknown key memroy_mib");
  document = to_json(every_device());
  document["disks"][1]["ro"] = true;
  EXPECT_EQ(error_of(document), "config: unknown key disks[1].ro");
  document = to_json(every_device());
  document["nets"][0]["rate_limit"]["burst"] = 1;
  EXPECT_EQ(error_of(document), "config: unknown key nets[0].rate_limit.burst");
}

TEST(VmConfigJson, RefusesWrongTypesNamingThePath) {
  json document = to_json(every_device());
  document["disks"][1]["queues"] = "2";
  EXPECT_EQ(error_of(document), "config: disks[1].queues must be a number");
  document = to_json(every_device());
  document["entropy"] = 1;
  EXPECT_EQ(error_of(document), "config: entropy must be true or false");
  document = to_json(every_device());
  document["kernel_path"] = 7;
  EXPECT_EQ(error_of(document), "config: kernel_path must be a string");
  document = to_json(every_device());
  document["disks"] = json::object();
  EXPECT_EQ(error_of(document), "config: disks must be an array");
  document = to_json(every_device());
  document["balloon"] = "yes";
  EXPECT_EQ(error_of(document), "config: balloon must be an object");
  EXPECT_EQ(error_of(json::array()), "config: the document must be a JSON object");
}

TEST(VmConfigJson, RefusesBadValues) {
  auto with = [](const std::function<void(json&)>& change) {
    json document = to_json(every_device());
    change(document);
    return error_of(document);
  };
  EXPECT_NE(with([](json& d) { d["vcpus"] = 0; }).find("config: vcpus must be a whole number from 1"), std::string::npos);
  EXPECT_NE(with([](json& d) { d["memory_mib"] = -5; }).find("config: memory_mib must be a whole number"),
            std::string::npos);
  EXPECT_NE(with([](json& d) { d["memory_mib"] = 1.5; }).find("config: memory_mib must be a whole number"),
            std::string::npos);
  EXPECT_NE(with([](json& d) { d["disks"][0]["queues"] = 65; }).find("disks[0].queues"), std::string::npos);
  EXPECT_NE(with([](json& d) { d["console"]["kind"] = "serial"; }).find("console.kind must be"), std::string::npos);
  EXPECT_NE(with([](json& d) { d["console"].erase("path"); }).find("console.path is needed"), std::string::npos);
  EXPECT_NE(with([](json& d) { d["nets"][0]["mac"] = "01:00:00:00:00:01"; }).find("nets[0].mac: "),
            std::string::npos);
  EXPECT_NE(with([](json& d) { d["vsock"]["guest_cid"] = 2; }).find("vsock.guest_cid"), std::string::npos);
  // validate() runs on the result: a balloon larger than memory.
  const std::string too_large = with([](json& d) { d["balloon"]["target_mib"] = 4096; });
  EXPECT_NE(too_large.find("config: --balloon target"), std::string::npos) << too_large;
  EXPECT_EQ(with([](json& d) { d.erase("kernel_path"); }), "config: no kernel given");
}

TEST(VmConfigJson, RefusesAnFdButAcceptsMinusOne) {
  json document = to_json(every_device());
  document["nets"][0]["fd"] = 3;
  EXPECT_NE(error_of(document).find("config: nets[0].fd cannot be given"), std::string::npos);
  document["nets"][0]["fd"] = -1;
  EXPECT_EQ(vm_config_from_json(document).nets[0].fd, -1);
  VmConfig with_fd = every_device();
  with_fd.nets[0].tap.clear();
  with_fd.nets[0].fd = 5;
  EXPECT_THROW(to_json(with_fd), Error);
}

}  // namespace
}  // namespace kdom::vmm
