// DirtyRing: one vCPU's dirty ring (KVM_CAP_DIRTY_LOG_RING, Documentation/virt/kvm/api.rst
// 8.29): the struct kvm_dirty_gfn entries KVM pushes, in order, as that vCPU writes pages of
// memory slots that log dirty pages, mapped from the vCPU's fd; and how far the harvest has
// got. An entry goes unused (flags 00) -> dirty (01, KVM) -> harvested (1x, us) -> unused
// (KVM_RESET_DIRTY_RINGS, Vm::reset_dirty_rings, which also write-protects the page again).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <functional>
#include <span>

#include "base/mapping.h"

namespace kdom::kvm {

class DirtyRing {
 public:
  // The ring of the vCPU whose fd is `vcpu_fd`: `entries` (a power of two, as enabled on its
  // VM) at page KVM_DIRTY_LOG_PAGE_OFFSET of the fd.
  DirtyRing(int vcpu_fd, uint32_t entries);
  // A ring laid out in memory that outlives it (tests play KVM's part).
  explicit DirtyRing(std::span<kvm_dirty_gfn> entries);

  uint32_t size() const { return static_cast<uint32_t>(entries_.size()); }
  // Takes the dirty entries from where the last harvest stopped up to the first that is not
  // dirty (in order: the API forbids skipping one): `dirty(slot, offset)` for each (KVM's slot
  // number, as_id in its high 16 bits, and the page's offset in the slot), then the entry is
  // marked harvested. Returns how many. The entries stay KVM's until a reset recycles them.
  size_t harvest(const std::function<void(uint32_t slot, uint64_t offset)>& dirty);

 private:
  Mapping mapping_;  // empty for a ring in the caller's memory
  std::span<kvm_dirty_gfn> entries_;
  uint32_t next_ = 0;  // entries harvested so far, modulo 2^32 (a multiple of the size)
};

}  // namespace kdom::kvm
