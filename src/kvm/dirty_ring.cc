// A vCPU's dirty ring: its mapping and its harvest.
#include "kvm/dirty_ring.h"

#include <unistd.h>

#include <atomic>
#include <bit>
#include <string>

#include "base/error.h"

namespace kdom::kvm {

namespace {

std::span<kvm_dirty_gfn> checked(std::span<kvm_dirty_gfn> entries) {
  // The index wraps by masking: KVM itself refuses any other size.
  if (!std::has_single_bit(entries.size()) || entries.size() > UINT32_MAX)
    throw Error("a dirty ring of " + std::to_string(entries.size()) + " entries: it must be a power of two");
  return entries;
}

}  // namespace

DirtyRing::DirtyRing(int vcpu_fd, uint32_t entries) {
  if (!std::has_single_bit(entries))
    throw Error("a dirty ring of " + std::to_string(entries) + " entries: it must be a power of two");
  const auto page = static_cast<off_t>(::sysconf(_SC_PAGESIZE));
  // KVM refuses a private or executable mapping of the ring.
  mapping_ = Mapping::of_fd(vcpu_fd, size_t{entries} * sizeof(kvm_dirty_gfn), PROT_READ | PROT_WRITE, MAP_SHARED,
                            KVM_DIRTY_LOG_PAGE_OFFSET * page);
  entries_ = {reinterpret_cast<kvm_dirty_gfn*>(mapping_.data()), entries};
}

DirtyRing::DirtyRing(std::span<kvm_dirty_gfn> entries) : entries_(checked(entries)) {}

size_t DirtyRing::harvest(const std::function<void(uint32_t slot, uint64_t offset)>& dirty) {
  const uint32_t mask = size() - 1;
  size_t taken = 0;
  // At most one lap: past it are the entries just harvested, which are no longer dirty anyway.
  while (taken < entries_.size()) {
    kvm_dirty_gfn& entry = entries_[next_ & mask];
    // KVM writes slot and offset, then publishes them with the flags: read the flags with
    // acquire before them (the ordering api.rst asks for; x86's TSO gives it for free).
    std::atomic_ref<uint32_t> flags(entry.flags);
    if (!(flags.load(std::memory_order_acquire) & KVM_DIRTY_GFN_F_DIRTY)) break;
    dirty(entry.slot, entry.offset);
    // Release: our reads of the entry come before KVM, seeing it harvested, reuses it.
    flags.store(KVM_DIRTY_GFN_F_RESET, std::memory_order_release);
    ++next_;
    ++taken;
  }
  return taken;
}

}  // namespace kdom::kvm
