// Disk image locks, so two VMMs never write one image at once: open file description (OFD)
// locks on the same bytes QEMU locks (its file-posix "perm" bytes at 100+bit and "shared perm"
// bytes at 200+bit), so kdom and QEMU also keep each other off an image the other writes.
// A writer holds consistent-read and write and shares neither write nor resize; a reader holds
// consistent-read and does not share write: any number of readers, or one writer alone. A
// shared user (the config asked for it, QEMU's share-rw) shares write: shared writers coexist
// with each other, never with a user that does not share; a shared reader also reads beside a
// plain writer.
#pragma once

#include <string>

namespace kdom::devices {

// Locks the image open on `fd` (opened read-write unless `read_only`; `shared`: others may write
// to it too). The locks last as long as the open file description. Throws Error naming `what`
// when another process holds a lock that conflicts ("... is in use by another domain or program
// that writes to it").
void lock_disk_image(int fd, bool read_only, bool shared, const std::string& what);

// Lets go of every lock lock_disk_image took on `fd` (also those a failed lock_disk_image left),
// the file staying open: another process may then lock the image. A live migration hands an
// image over so, from the source's VMM to the destination's on shared storage. Throws
// SystemError naming `what` when the kernel refuses.
void unlock_disk_image(int fd, const std::string& what);

}  // namespace kdom::devices
