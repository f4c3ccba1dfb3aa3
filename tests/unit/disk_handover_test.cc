// Tests of a live migration's disk hand-over on the VMM side: a disk opened without its image
// lock (an incoming domain's), BlockDevice's hold and release of it, and VirtioDevices taking
// every disk's lock all or nothing (the control socket's disk-locks op). Another open file
// description of the same image stands for the other host's VMM.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"
#include "devices/image_lock.h"
#include "devices/virtio/block.h"
#include "vmm/event_loop.h"
#include "vmm/virtio_devices.h"

namespace kdom {
namespace {

class DiskHandover : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/kdom-disk-handover-XXXXXX";
    dir_ = ::mkdtemp(pattern);
    for (const char* name : {"a.img", "b.img"}) std::ofstream(dir_ + "/" + name) << std::string(1 << 20, '\0');
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string image(const std::string& name) const { return dir_ + "/" + name + ".img"; }
  vmm::DiskConfig disk(const std::string& name) const {
    vmm::DiskConfig config;
    config.path = image(name);
    config.id = name;
    return config;
  }
  // Whether another VMM could lock the image for writing now (it then lets go again).
  bool other_may_lock(const std::string& name) {
    UniqueFd other(::open(image(name).c_str(), O_RDWR | O_CLOEXEC));
    EXPECT_TRUE(other.valid());
    try {
      devices::lock_disk_image(other.get(), false, false, "the other VMM's " + name);
    } catch (const Error&) {
      return false;
    }
    return true;
  }
  // The other VMM holding the image's lock.
  UniqueFd other_holds(const std::string& name) {
    UniqueFd other(::open(image(name).c_str(), O_RDWR | O_CLOEXEC));
    devices::lock_disk_image(other.get(), false, false, "the other VMM's " + name);
    return other;
  }

  std::string dir_;
};

TEST_F(DiskHandover, ADiskOpenedWithoutItsLockIsCheckedButNotLocked) {
  UniqueFd other = other_holds("a");
  devices::virtio::BlockDiskConfig config;
  config.path = image("a");
  config.lock_image = false;
  devices::virtio::BlockDevice disk(config);  // the other VMM's lock does not stop it
  EXPECT_FALSE(disk.image_locked());
  EXPECT_EQ(disk.capacity(), 2048u);
  config.path = image("missing");
  EXPECT_THROW(devices::virtio::BlockDevice{config}, Error);  // checked all the same
}

TEST_F(DiskHandover, HoldAndReleaseMoveTheLock) {
  devices::virtio::BlockDiskConfig config;
  config.path = image("a");
  config.lock_image = false;
  devices::virtio::BlockDevice disk(config);
  EXPECT_TRUE(other_may_lock("a"));
  disk.hold_image_lock();
  EXPECT_TRUE(disk.image_locked());
  EXPECT_FALSE(other_may_lock("a"));
  disk.hold_image_lock();  // held already: nothing
  disk.release_image_lock();
  EXPECT_FALSE(disk.image_locked());
  EXPECT_TRUE(other_may_lock("a"));
  {
    UniqueFd other = other_holds("a");
    try {
      disk.hold_image_lock();
      ADD_FAILURE() << "a lock another VMM holds was taken";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("in use by another domain or program"), std::string::npos)
          << error.what();
    }
    EXPECT_FALSE(disk.image_locked());
  }
  // The refused attempt left nothing behind: the other VMM gone, anyone may take it.
  EXPECT_TRUE(other_may_lock("a"));
  disk.hold_image_lock();
  EXPECT_FALSE(other_may_lock("a"));
}

TEST_F(DiskHandover, EveryDiskIsTakenOrNone) {
  vmm::VmConfig config;
  config.disks.push_back(disk("a"));
  config.disks.push_back(disk("b"));
  vmm::EventLoop events;
  vmm::VirtioDevices devices(config, events, /*lock_disks=*/false);
  EXPECT_TRUE(other_may_lock("a"));
  EXPECT_TRUE(other_may_lock("b"));
  {
    UniqueFd other = other_holds("b");  // the source's VMM has not let go of b yet
    try {
      devices.hold_disk_locks();
      ADD_FAILURE() << "disk-locks took the locks while another VMM held b's";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("disk 'b': disk image '" + image("b") + "' is in use"), std::string::npos)
          << error.what();
    }
    EXPECT_TRUE(other_may_lock("a"));  // a's lock, taken first, was let go again
  }
  EXPECT_EQ(devices.hold_disk_locks(), 2u);
  EXPECT_FALSE(other_may_lock("a"));
  EXPECT_FALSE(other_may_lock("b"));
  EXPECT_EQ(devices.hold_disk_locks(), 2u);  // held already: nothing changes
  EXPECT_EQ(devices.release_disk_locks(), 2u);
  EXPECT_TRUE(other_may_lock("a"));
  EXPECT_TRUE(other_may_lock("b"));
  EXPECT_EQ(devices.hold_disk_locks(), 2u);  // a failed migration: the source takes them back
  EXPECT_FALSE(other_may_lock("a"));
  EXPECT_FALSE(other_may_lock("b"));
}

TEST_F(DiskHandover, ADomainStartedAsUsualHoldsItsLocks) {
  vmm::VmConfig config;
  config.disks.push_back(disk("a"));
  vmm::EventLoop events;
  vmm::VirtioDevices devices(config, events);
  EXPECT_FALSE(other_may_lock("a"));
  EXPECT_EQ(devices.announce(), 0u);  // no NIC: nothing to send, no error
}

}  // namespace
}  // namespace kdom
