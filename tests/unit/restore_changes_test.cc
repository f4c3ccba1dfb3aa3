// Tests of what a restore may change of a saved domain's config: overrides the restored machine
// can take (name, actions, disk targets, bridges), the saved vdevs, MACs and devids kept for
// devices listed again without them, and each refused change with its one-line message.
#include "config/restore_changes.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "config/xl_cfg.h"

namespace kdom::config {
namespace {

// A domain as kdomd saved it: every disk has its vdev, every NIC its MAC; its second NIC is
// devid 3 (NICs 1 and 2 were detached before the save).
DomainConfig saved_domain() {
  DomainConfig config = parse_xl_cfg(R"(
name = "web"
uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
memory = 256
vcpus = 2
kernel = "/boot/vmlinuz"
ramdisk = "/boot/initrd.img"
cmdline = "console=ttyS0"
disk = [ '/img/root.img,raw,xvda,rw', '/img/data.img,raw,xvdb,ro' ]
vif = [ 'mac=02:6b:64:00:00:01,bridge=br0', 'mac=02:6b:64:00:00:02,bridge=br1' ]
rng = 1
vsock = 7
balloon = 1
)",
                                     "saved.cfg");
  config.vifs[1].devid = 3;
  return config;
}

// The error `overrides` get, or "" when they are taken.
std::string refusal(const std::vector<std::string>& overrides) {
  try {
    restored_config(saved_domain(), overrides);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(RestoredConfig, NoOverridesGiveTheSavedConfig) {
  EXPECT_EQ(to_json(restored_config(saved_domain(), {})), to_json(saved_domain()));
}

TEST(RestoredConfig, TakesWhatOnlyTheHostSees) {
  const DomainConfig config = restored_config(
      saved_domain(), {"name='web2'", "on_crash='preserve'", "on_poweroff=\"restart\"",
                       "disk=['/new/root.img,raw,xvda,rw', 'format=raw,vdev=xvdb,access=ro,target=/new/data.img']",
                       "vif=['mac=02:6b:64:00:00:01,bridge=br9', 'mac=02:6b:64:00:00:02,vifname=tap5,rate=1MB/s']",
                       "balloon_stats=5"});
  EXPECT_EQ(config.name, "web2");
  EXPECT_EQ(config.on_crash, LifecycleAction::kPreserve);
  EXPECT_EQ(config.on_poweroff, LifecycleAction::kRestart);
  EXPECT_EQ(config.on_reboot, LifecycleAction::kRestart);
  ASSERT_EQ(config.disks.size(), 2u);
  EXPECT_EQ(config.disks[0].target, "/new/root.img");
  EXPECT_EQ(config.disks[1].target, "/new/data.img");
  EXPECT_TRUE(config.disks[1].read_only);
  ASSERT_EQ(config.vifs.size(), 2u);
  EXPECT_EQ(config.vifs[0].bridge, "br9");
  EXPECT_EQ(config.vifs[1].bridge, "");
  EXPECT_EQ(config.vifs[1].tap, "tap5");
  EXPECT_EQ(config.vifs[1].rate_bytes_per_second, 1000000u);
  EXPECT_EQ(config.vifs[1].devid, 3u);  // the saved NIC's, not its place in the list
  EXPECT_EQ(config.balloon_stats_seconds, 5u);
  // The rest as saved.
  const DomainConfig saved = saved_domain();
  EXPECT_EQ(config.uuid, saved.uuid);
  EXPECT_EQ(config.memory_mib, 256u);
  EXPECT_EQ(config.vcpus, 2u);
  EXPECT_EQ(config.cmdline, "console=ttyS0");
  EXPECT_EQ(config.vsock_cid, 7u);
}

TEST(RestoredConfig, DevicesListedAgainKeepTheirSavedNamesAndMacs) {
  const DomainConfig config =
      restored_config(saved_domain(), {"disk=['/new/root.img', 'access=ro,target=/new/data.img']",
                                       "vif=['bridge=br8', 'bridge=br9']"});
  EXPECT_EQ(config.disks[0].vdev, "xvda");
  EXPECT_EQ(config.disks[1].vdev, "xvdb");
  EXPECT_EQ(config.vifs[0].mac, "02:6b:64:00:00:01");
  EXPECT_EQ(config.vifs[0].devid, 0u);
  EXPECT_EQ(config.vifs[1].mac, "02:6b:64:00:00:02");
  EXPECT_EQ(config.vifs[1].devid, 3u);
  EXPECT_EQ(config.vifs[1].bridge, "br9");
}

TEST(RestoredConfig, RefusesWhatTheRestoredMachineCannotTake) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"memory=999"}, "memory cannot change on a restore (the saved domain has 256 MiB)"},
      {{"maxmem=512"}, "maxmem cannot change on a restore (the saved domain has 256 MiB)"},
      {{"vcpus=1"}, "vcpus cannot change on a restore (the saved domain has 2)"},
      {{"maxvcpus=4"}, "maxvcpus cannot change on a restore (the saved domain has 2)"},
      {{"kernel='/boot/other'"}, "kernel cannot change on a restore (the saved domain's is '/boot/vmlinuz')"},
      {{"ramdisk='/boot/other.img'"}, "ramdisk cannot change on a restore (the saved domain's is '/boot/initrd.img')"},
      {{"cmdline='quiet'"}, "cmdline cannot change on a restore (the saved domain's is 'console=ttyS0')"},
      {{"rng=0"}, "rng cannot change on a restore (the saved domain has rng=1)"},
      {{"balloon=0"}, "balloon cannot change on a restore (the saved domain has balloon=1)"},
      {{"vsock=8"}, "vsock cannot change on a restore (the saved domain has vsock=7)"},
      {{"uuid='3f2504e0-4f89-11d3-9a0c-0305e82c3302'"},
       "uuid cannot be set on a restore (the restored domain keeps the saved uuid, or gets a new one while the saved "
       "domain still runs)"},
      {{"disk=['/img/root.img,raw,xvda,rw']"},
       "the number of disks (disk=) cannot change on a restore (the saved domain has 2: xvda, xvdb)"},
      {{"disk=[]"}, "the number of disks (disk=) cannot change on a restore (the saved domain has 2: xvda, xvdb)"},
      {{"disk=['/img/data.img,raw,xvdb,ro', '/img/root.img,raw,xvda,rw']"},
       "a disk's vdev cannot change on a restore (the saved domain's disk 0 is xvda, not xvdb)"},
      {{"disk=['/img/root.img,raw,xvda,rw', '/img/data.img,raw,xvdc,ro']"},
       "a disk's vdev cannot change on a restore (the saved domain's disk 1 is xvdb, not xvdc)"},
      {{"disk=['/img/root.img,raw,xvda,rw', '/img/data.img,raw,xvdb,rw']"},
       "a disk's access cannot change on a restore (the saved domain's xvdb is ro)"},
      {{"vif=['bridge=br0']"},
       "the number of NICs (vif=) cannot change on a restore (the saved domain has 2: devid 0, devid 3)"},
      {{"vif=['mac=02:6b:64:00:00:09', 'bridge=br1']"},
       "a NIC's MAC cannot change on a restore (the saved domain's vif 0 has 02:6b:64:00:00:01, not "
       "02:6b:64:00:00:09)"},
      {{"disk=['root.img,raw,xvda,rw', '/img/data.img,raw,xvdb,ro']"},
       "disk xvda: the target 'root.img' must be an absolute path on a restore (kdomd does not know the client's "
       "current directory)"},
      // apply_xl_overrides' own refusals.
      {{"memory"}, "command line: expected '=' after 'memory' at the end of the input"},
      {{"root='/dev/vda'"},
       "command line: 'root' cannot be overridden on its own here: give cmdline=\"...\" (the whole command line)"},
  };
  for (const auto& [overrides, message] : cases) EXPECT_EQ(refusal(overrides), message) << overrides[0];
  // Restating a saved value is no change.
  EXPECT_EQ(refusal({"memory=256", "maxmem=256", "vcpus=2", "kernel='/boot/vmlinuz'", "rng=1", "vsock=7"}), "");
}

TEST(CheckRestorableChanges, ComparesEveryDeviceInOrder) {
  const DomainConfig saved = saved_domain();
  EXPECT_NO_THROW(check_restorable_changes(saved, saved));
  DomainConfig changed = saved;
  changed.disks[0].shared = true;
  changed.vifs[0].ip = "10.0.0.7";
  changed.on_reboot = LifecycleAction::kDestroy;
  EXPECT_NO_THROW(check_restorable_changes(saved, changed));
  changed.vifs[1].devid = 1;
  try {
    check_restorable_changes(saved, changed);
    ADD_FAILURE() << "another devid was taken";
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "a NIC's devid cannot change on a restore (the saved domain's NIC 1 is devid 3, not 1)");
  }
  changed = saved;
  changed.vsock_cid.reset();
  EXPECT_THROW(check_restorable_changes(saved, changed), Error);
  changed = saved;
  changed.ramdisk.clear();
  try {
    check_restorable_changes(changed, saved);
    ADD_FAILURE() << "a ramdisk was added";
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "ramdisk cannot change on a restore (the saved domain has none)");
  }
}

}  // namespace
}  // namespace kdom::config
