// Disk image locks: shared OFD locks on single bytes, then a test for conflicting holders.
#include "devices/image_lock.h"

#include <fcntl.h>

#include <cerrno>
#include <vector>

#include "base/error.h"

namespace kdom::devices {

namespace {

// QEMU's permission bits and lock byte bases (block/file-posix.c's layout, kept compatible).
constexpr off_t kHeldBase = 100;
constexpr off_t kUnsharedBase = 200;
constexpr off_t kBitsPerBase = 100;  // room for every permission bit QEMU has (fewer than 64)
constexpr int kConsistentRead = 0;
constexpr int kWrite = 1;
constexpr int kResize = 3;

void lock_byte(int fd, off_t offset, const std::string& what) {
  struct flock lock{};
  lock.l_type = F_RDLCK;  // shared: every holder takes the same kind, the test below decides
  lock.l_whence = SEEK_SET;
  lock.l_start = offset;
  lock.l_len = 1;
  if (::fcntl(fd, F_OFD_SETLK, &lock) != 0) {
    if (errno == EAGAIN || errno == EACCES)
      throw Error(what + " is in use by another domain or program that writes to it");
    if (errno != EINVAL && errno != ENOLCK) throw SystemError(what + ": cannot lock it", errno);
  }
}

// True when some other open file description holds a lock on the byte at `offset`.
bool byte_held_elsewhere(int fd, off_t offset) {
  struct flock lock{};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = offset;
  lock.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &lock) != 0) return false;  // no lock support: nothing to check
  return lock.l_type != F_UNLCK;
}

}  // namespace

void lock_disk_image(int fd, bool read_only, bool shared, const std::string& what) {
  std::vector<int> held{kConsistentRead};
  if (!read_only) held.push_back(kWrite);
  std::vector<int> unshared;
  if (!shared) unshared.push_back(kWrite);
  if (!read_only) unshared.push_back(kResize);
  for (int bit : held) lock_byte(fd, kHeldBase + bit, what);
  for (int bit : unshared) lock_byte(fd, kUnsharedBase + bit, what);
  // Lock first, test second: of two openers racing, at least one sees the other.
  for (int bit : held)
    if (byte_held_elsewhere(fd, kUnsharedBase + bit))
      throw Error(what + " is in use by another domain or program that does not share it" +
                  (read_only ? " (it writes to it)" : ""));
  for (int bit : unshared)
    if (byte_held_elsewhere(fd, kHeldBase + bit))
      throw Error(what + " is in use by another domain or program that " +
                  (bit == kWrite ? "writes to it" : "may resize it"));
}

void unlock_disk_image(int fd, const std::string& what) {
  // One range over both bases: every byte kdom (or QEMU) locks lies in it, and only this open
  // file description's own locks go.
  struct flock lock{};
  lock.l_type = F_UNLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = kHeldBase;
  lock.l_len = kUnsharedBase + kBitsPerBase - kHeldBase;
  if (::fcntl(fd, F_OFD_SETLK, &lock) != 0 && errno != EINVAL && errno != ENOLCK)
    throw SystemError(what + ": cannot unlock it", errno);
}

}  // namespace kdom::devices
