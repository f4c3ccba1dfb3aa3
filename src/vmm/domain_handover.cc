// A live migration's hand-over of a domain between two VMMs (Domain::set_disk_locks, announce):
// the disks' image locks let go by the source and taken by the destination, so that two copies
// of the domain never write one image at once, and the NICs' announcement once the domain has
// moved.
#include "base/error.h"
#include "base/log.h"
#include "vmm/domain.h"

namespace kdom::vmm {

size_t Domain::set_disk_locks(bool hold) {
  if (hold) {
    const size_t disks = virtio_->hold_disk_locks();
    if (!disks_locked_) log_line("disk locks taken: " + std::to_string(disks) + " disk(s)");
    disks_locked_ = true;
    return disks;
  }
  {
    // Paused, the vCPUs are parked and every disk quiesced (no request in flight), and unpause
    // refuses until the locks are held again: nothing writes an image this VMM lets go of.
    std::lock_guard lock(pause_mutex_);
    if (!pause_requested_) throw Error("the domain is running: pause it before its disks' locks are let go");
  }
  const size_t disks = virtio_->release_disk_locks();
  if (disks_locked_) log_line("disk locks let go: " + std::to_string(disks) + " disk(s) flushed and unlocked");
  disks_locked_ = false;
  return disks;
}

size_t Domain::announce() {
  const size_t nics = virtio_->announce();
  log_line("announced " + std::to_string(nics) + " NIC(s) (RARP)");
  return nics;
}

}  // namespace kdom::vmm
