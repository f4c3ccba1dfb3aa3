// KVM's dirty rings gathered into per-region bitmaps.
#include "vmm/dirty_ring_log.h"

#include <utility>

namespace kdom::vmm {

namespace {

constexpr uint64_t kBitsPerWord = 64;

std::vector<std::vector<uint64_t>> empty_bitmaps(const std::vector<uint64_t>& region_pages) {
  std::vector<std::vector<uint64_t>> bitmaps;
  for (uint64_t pages : region_pages) bitmaps.emplace_back((pages + kBitsPerWord - 1) / kBitsPerWord);
  return bitmaps;
}

}  // namespace

DirtyRingLog::DirtyRingLog(const std::vector<uint64_t>& region_pages, std::vector<kvm::DirtyRing> rings,
                           std::function<void()> reset)
    : region_pages_(region_pages),
      dirty_(empty_bitmaps(region_pages)),
      rings_(std::move(rings)),
      reset_(std::move(reset)) {}

void DirtyRingLog::harvest_locked(kvm::DirtyRing& ring) {
  const size_t count = ring.harvest([this](uint32_t slot, uint64_t offset) {
    // KVM's slot number carries the address space in its high half; kdom uses only space 0.
    const uint32_t space = slot >> 16;
    const uint32_t id = slot & 0xffff;
    if (space != 0 || id >= region_pages_.size() || offset >= region_pages_[id]) {
      // Skipped, but never silently: a log that names pages kdom has not got may miss others.
      if (!bad_entry_)
        bad_entry_ = "KVM's dirty ring named page " + std::to_string(offset) + " of memory slot " +
                     std::to_string(id) + (space ? " in address space " + std::to_string(space) : "") +
                     ", outside guest RAM (" + std::to_string(region_pages_.size()) +
                     " slots): the dirty log cannot be trusted";
      return;
    }
    dirty_[id][offset / kBitsPerWord] |= uint64_t{1} << (offset % kBitsPerWord);
  });
  if (count > 0) unreset_ = true;
}

void DirtyRingLog::reset_locked() {
  if (!unreset_) return;
  reset_();
  unreset_ = false;
}

std::vector<std::vector<uint64_t>> DirtyRingLog::take() {
  std::lock_guard lock(mutex_);
  for (auto& ring : rings_) harvest_locked(ring);
  // Before the pages leave the lock: the sender reads them after KVM protects them again.
  reset_locked();
  if (bad_entry_) {
    const std::string why = std::move(*bad_entry_);
    bad_entry_.reset();
    throw DirtyRingError(why);
  }
  return std::exchange(dirty_, empty_bitmaps(region_pages_));
}

void DirtyRingLog::harvest_full(size_t vcpu) {
  std::lock_guard lock(mutex_);
  ++full_harvests_;
  harvest_locked(rings_.at(vcpu));
  reset_locked();
}

void DirtyRingLog::discard() {
  std::lock_guard lock(mutex_);
  for (auto& ring : rings_) harvest_locked(ring);
  reset_locked();
  dirty_ = empty_bitmaps(region_pages_);
  bad_entry_.reset();
}

uint64_t DirtyRingLog::full_harvests() {
  std::lock_guard lock(mutex_);
  return full_harvests_;
}

}  // namespace kdom::vmm
