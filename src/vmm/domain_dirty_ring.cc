// Which dirty log a domain's live migrations use: KVM's dirty ring where KVM offers it (the
// migration thread harvests it while the vCPUs run, and the log costs nothing while no
// migration runs), KVM's per-slot bitmaps (KVM_GET_DIRTY_LOG) otherwise, and on kvm_pvm. The
// choice is made once, as the VM is built: KVM takes the ring only before any vCPU exists.
#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "vmm/domain.h"

namespace kdom::vmm {

namespace {

// 64 KiB a vCPU: the least api.rst suggests. A ring that fills sooner only costs the vCPU an
// exit to empty it (DirtyRingLog::harvest_full).
constexpr uint32_t kDirtyRingEntries = 4096;

// kvm_pvm (software-assisted nested KVM) offers the ring but does not keep it: writes it
// emulates push entries past a full ring without KVM_EXIT_DIRTY_RING_FULL (the kernel WARNs
// in kvm_dirty_ring_push), overwriting entries not yet harvested, so pages would be missed
// (tests/kvm/kvm_wiring_test.cc shows it). Its bitmap has no such flaw.
bool host_kvm_is_pvm() { return std::filesystem::exists("/sys/module/kvm_pvm"); }

enum class Choice { kAuto, kBitmap, kRing };

// KDOM_DIRTY_LOG, for tests, to prove both paths on one host: "bitmap" (KVM's bitmaps even
// where the ring is offered), "ring" (the ring wherever KVM offers it, kvm_pvm included);
// unset or empty: the ring where KVM has it, but for kvm_pvm.
Choice choice() {
  const char* value = std::getenv("KDOM_DIRTY_LOG");
  if (value == nullptr || *value == '\0') return Choice::kAuto;
  if (std::string(value) == "bitmap") return Choice::kBitmap;
  if (std::string(value) == "ring") return Choice::kRing;
  throw Error(std::string("KDOM_DIRTY_LOG='") + value + "': it may be 'bitmap', 'ring' or unset");
}

}  // namespace

void Domain::enable_dirty_ring() {
  const Choice chosen = choice();
  if (chosen == Choice::kBitmap || (chosen == Choice::kAuto && host_kvm_is_pvm())) return;
  if (vm_->enable_dirty_ring(kDirtyRingEntries))
    dirty_ring_entries_ = kDirtyRingEntries;
  else if (chosen == Choice::kRing)
    throw Error("KDOM_DIRTY_LOG=ring, but this host's KVM has no dirty ring");
}

void Domain::map_dirty_rings() {
  if (dirty_ring_entries_ == 0) return;
  std::vector<kvm::DirtyRing> rings;
  for (const auto& vcpu : vcpus_) rings.emplace_back(vcpu->fd(), dirty_ring_entries_);
  // Slot i is RAM region i (build() and set_kvm_dirty_log() number them so).
  std::vector<uint64_t> region_pages;
  for (const auto& region : memory_->regions()) region_pages.push_back(region.range.size / snapshot::kPageSize);
  dirty_rings_ = std::make_unique<DirtyRingLog>(region_pages, std::move(rings), [this] { vm_->reset_dirty_rings(); });
}

const char* Domain::dirty_log_kind() const { return dirty_rings_ ? "dirty ring" : "dirty bitmap"; }

}  // namespace kdom::vmm
