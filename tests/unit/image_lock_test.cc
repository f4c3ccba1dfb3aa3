// Disk image locks: one writer or many readers, also against QEMU's own locks (qemu-io).
#include "devices/image_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kdom::devices {
namespace {

class ImageLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/kdom-image-lock-XXXXXX";
    dir_ = mkdtemp(pattern);
    path_ = dir_ + "/disk.img";
    std::ofstream(path_) << std::string(1 << 20, '\0');
  }
  void TearDown() override {
    std::remove(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  UniqueFd open_locked(bool read_only, bool shared = false) {
    UniqueFd fd(::open(path_.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    lock_disk_image(fd.get(), read_only, shared, "disk image '" + path_ + "'");
    return fd;
  }
  // The exit status and output of QEMU's qemu-io reading the image opened read-write (it takes
  // QEMU's locks, as a QEMU guest's disk does).
  int qemu_io_read(std::string& output) {
    const std::string command = "qemu-io -f raw -c 'read 0 512' '" + path_ + "' 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    char buffer[512];
    output.clear();
    while (std::fgets(buffer, sizeof(buffer), pipe)) output += buffer;
    return ::pclose(pipe);
  }

  std::string dir_, path_;
};

TEST_F(ImageLockTest, OneWriterExcludesEveryoneElse) {
  UniqueFd writer = open_locked(false);
  EXPECT_THROW(open_locked(false), Error);
  try {
    open_locked(true);
    ADD_FAILURE() << "a reader got in beside a writer";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("in use by another domain or program"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find(path_), std::string::npos);
  }
  writer.reset();
  EXPECT_NO_THROW(open_locked(false));  // released with its file description
}

TEST_F(ImageLockTest, ReadersShareButKeepWritersOut) {
  UniqueFd first = open_locked(true);
  UniqueFd second = open_locked(true);
  EXPECT_THROW(open_locked(false), Error);
  first.reset();
  second.reset();
  EXPECT_NO_THROW(open_locked(false));
}

// Shared write only when asked for: shared writers coexist with each other and with shared
// readers, never with a user that does not share, whichever came first.
TEST_F(ImageLockTest, SharedWritersCoexistOnlyWithEachOther) {
  {
    UniqueFd first = open_locked(false, true);
    UniqueFd second = open_locked(false, true);
    UniqueFd reader = open_locked(true, true);
    EXPECT_THROW(open_locked(false), Error);
    EXPECT_THROW(open_locked(true), Error);
  }
  UniqueFd writer = open_locked(false);
  EXPECT_THROW(open_locked(false, true), Error);
  EXPECT_NO_THROW(open_locked(true, true));  // a shared reader asked to see others' writes
  writer.reset();
  UniqueFd reader = open_locked(true);
  EXPECT_THROW(open_locked(false, true), Error);
  EXPECT_NO_THROW(open_locked(true, true));  // it reads only, which a plain reader allows
}

// A live migration's hand-over: the image stays open on both sides (two open file
// descriptions) while the lock moves from one to the other and back.
TEST_F(ImageLockTest, UnlockLetsAnotherLockAndRelockingKeepsItOut) {
  UniqueFd source = open_locked(false);
  UniqueFd destination(::open(path_.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(destination.valid());
  const std::string what = "disk image '" + path_ + "'";
  EXPECT_THROW(lock_disk_image(destination.get(), false, false, what), Error);
  unlock_disk_image(destination.get(), what);  // what the refused attempt took
  unlock_disk_image(source.get(), what);
  EXPECT_NO_THROW(lock_disk_image(destination.get(), false, false, what));
  EXPECT_THROW(lock_disk_image(source.get(), false, false, what), Error);
  unlock_disk_image(source.get(), what);
  unlock_disk_image(destination.get(), what);  // the migration failed: the source takes it back
  EXPECT_NO_THROW(lock_disk_image(source.get(), false, false, what));
  EXPECT_THROW(lock_disk_image(destination.get(), false, false, what), Error);
  // A third opener is refused too: the source's relock is the whole lock again.
  EXPECT_THROW(open_locked(true), Error);
}

// Unlocking takes only this file description's locks: readers sharing the image keep theirs.
TEST_F(ImageLockTest, UnlockLeavesOthersLocks) {
  UniqueFd first = open_locked(true);
  UniqueFd second = open_locked(true);
  unlock_disk_image(first.get(), "first");
  EXPECT_THROW(open_locked(false), Error);  // the second reader still keeps writers out
  unlock_disk_image(second.get(), "second");
  EXPECT_NO_THROW(open_locked(false));
}

TEST_F(ImageLockTest, QemuSeesKdomsWriteLock) {
  std::string output;
  ASSERT_EQ(qemu_io_read(output), 0) << "qemu-io (Debian's qemu-utils) must open a free image: " << output;
  UniqueFd writer = open_locked(false);
  EXPECT_NE(qemu_io_read(output), 0) << "qemu-io opened an image kdom writes to: " << output;
  EXPECT_NE(output.find("lock"), std::string::npos) << output;
  writer.reset();
  EXPECT_EQ(qemu_io_read(output), 0) << output;
}

}  // namespace
}  // namespace kdom::devices
