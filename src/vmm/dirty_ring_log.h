// DirtyRingLog: KVM's dirty rings (one a vCPU, kvm::DirtyRing) gathered into per-RAM-region
// page bitmaps, the shape KVM_GET_DIRTY_LOG gives: live migration's log of the guest's writes
// where the rings are on (KVM then refuses KVM_GET_DIRTY_LOG).
//
// Two kinds of thread harvest. The migration thread takes every ring at each take, while the
// vCPUs run. A vCPU whose ring is full (KVM_EXIT_DIRTY_RING_FULL) harvests its own, into the
// bitmaps the next take returns, and runs on: it never waits for a take that may be a whole
// round away, and needs no waking when a migration ends meanwhile. Each harvest, the reset
// after it and a take's hand-over happen under one lock, so a page reaches the sender only
// once KVM has write-protected it again (api.rst: reset before reading the pages): a write
// after the sender reads it is logged anew, for a later take.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "kvm/dirty_ring.h"

namespace kdom::vmm {

// KVM named a page that is not guest RAM: the log cannot be trusted.
class DirtyRingError : public Error {
 public:
  using Error::Error;
};

class DirtyRingLog {
 public:
  // `region_pages[i]`: the pages of RAM region i, which is memory slot i (address space 0);
  // `rings[v]`: vCPU v's; `reset`: KVM_RESET_DIRTY_RINGS (Vm::reset_dirty_rings).
  DirtyRingLog(const std::vector<uint64_t>& region_pages, std::vector<kvm::DirtyRing> rings,
               std::function<void()> reset);

  // The migration thread: every ring harvested and reset; the pages dirtied since the last
  // take, per region, as bitmap words (bit i of word w: page 64 * w + i). KVM's entries are
  // pushed when a vCPU exits (a CPU's own log, Intel's PML, is flushed then): a take while the
  // vCPUs run may miss the latest writes, which a later take has; one with every vCPU out of
  // KVM_RUN (paused) has them all. Throws DirtyRingError, once, when an entry since the last
  // take named a page outside guest RAM (KVM and kdom disagree on the slots).
  std::vector<std::vector<uint64_t>> take();
  // vCPU `vcpu`'s thread, after KVM_EXIT_DIRTY_RING_FULL: its ring harvested and reset.
  void harvest_full(size_t vcpu);
  // Every ring harvested and reset, and what they held forgotten: before a migration starts
  // (round 1 reads every page anyway) and after it ends, so that the rings are empty
  // while no migration runs.
  void discard();
  // How many times a vCPU found its ring full, since the domain was built.
  uint64_t full_harvests();

 private:
  void harvest_locked(kvm::DirtyRing& ring);
  void reset_locked();

  std::mutex mutex_;  // guards everything below
  std::vector<uint64_t> region_pages_;
  std::vector<std::vector<uint64_t>> dirty_;
  std::vector<kvm::DirtyRing> rings_;
  std::function<void()> reset_;
  uint64_t full_harvests_ = 0;
  bool unreset_ = false;  // entries harvested and not yet reset (a reset failed, say)
  std::optional<std::string> bad_entry_;  // the first entry outside guest RAM since the last take
};

}  // namespace kdom::vmm
