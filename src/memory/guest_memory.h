// GuestMemory: the guest's RAM, as host mappings of guest-physical ranges. Every access by
// guest-physical address is bounds-checked: an address or length the guest (or a loader)
// gives that is not wholly inside one RAM region throws GuestMemoryError and touches nothing.
// The RAM is a memfd mapped shared, not anonymous memory: another mapping of the same file (a
// thread reading it for a migration, a restore mapping pages in) sees the guest's own bytes.
// While a live migration runs, it also keeps a dirty log of the pages the VMM itself writes
// (KVM's log sees only the guest's writes): whoever writes guest RAM outside the guest marks
// what it wrote (mark_dirty), a no-op costing one relaxed load when no log is kept.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/error.h"
#include "base/mapping.h"
#include "base/unique_fd.h"
#include "memory/dirty_bitmap.h"

namespace kdom {

class GuestMemoryError : public Error {
 public:
  using Error::Error;
};

struct GuestRange {
  uint64_t start = 0;
  uint64_t size = 0;
  uint64_t end() const { return start + size; }
};

class GuestMemory {
 public:
  struct Region {
    GuestRange range;
    uint8_t* host = nullptr;
    uint64_t file_offset = 0;  // where the region's bytes are in memfd()
  };

  // Maps one host region per range; ranges must be page-aligned, sorted and disjoint.
  explicit GuestMemory(const std::vector<GuestRange>& ranges);

  const std::vector<Region>& regions() const { return regions_; }
  uint64_t total_size() const;
  // The file holding all of the RAM, regions one after another; its size is sealed.
  int memfd() const { return memfd_.get(); }
  // The parts of `region` that hold pages, in order (lseek SEEK_DATA/SEEK_HOLE on the memfd,
  // page-aligned): the rest was never written, or was discarded, and reads as zeros. Reading
  // such a hole through the mapping would give it pages, so whoever reads all of RAM (a save)
  // asks this first.
  std::vector<GuestRange> populated(const Region& region) const;

  // The host bytes for [gpa, gpa + length); throws GuestMemoryError when any of it lies
  // outside guest RAM or crosses from one region into another.
  std::span<uint8_t> slice(uint64_t gpa, uint64_t length) const;
  bool contains(uint64_t gpa, uint64_t length) const;

  // Gives the host memory behind [gpa, gpa + length) back to the host (madvise
  // MADV_REMOVE: the file's pages go, not only this mapping's view of them): the range reads
  // as zeros afterwards and is backed again on the next touch. The range must be page-aligned and wholly inside one RAM region, else
  // GuestMemoryError and nothing is discarded. The pages are marked dirty: a page that went
  // to a migration's destination with data must reach it again as zero.
  void discard(uint64_t gpa, uint64_t length) const;

  // The VMM's dirty log (live migration). start_dirty_log clears the bitmaps and starts
  // marking; from its return on, every mark_dirty of a write made after it is seen.
  void start_dirty_log();
  void stop_dirty_log();
  bool dirty_logging() const { return dirty_logging_->load(std::memory_order_relaxed); }
  // Marks the pages of [gpa, gpa + length) as written by the VMM, after the write; the parts
  // outside guest RAM are ignored. Any thread; when no log is kept, one relaxed load.
  void mark_dirty(uint64_t gpa, uint64_t length) const {
    // The write stays before the flag's load in the compiled code; start_dirty_log's
    // membarrier supplies the CPU's barrier (no fence here, on the I/O path).
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (length != 0 && dirty_logging()) mark_dirty_pages(gpa, length);
  }
  // Region `index`'s bitmap words (bit i of word w: the region's page 64 * w + i), cleared.
  std::vector<uint64_t> take_dirty(size_t index) const;

  void write(uint64_t gpa, const void* data, uint64_t length) const {
    if (length != 0) std::memcpy(slice(gpa, length).data(), data, length);
  }
  void read(uint64_t gpa, void* data, uint64_t length) const {
    if (length != 0) std::memcpy(data, slice(gpa, length).data(), length);
  }
  template <typename T>
  void write_object(uint64_t gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    write(gpa, &value, sizeof(T));
  }
  template <typename T>
  T read_object(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    read(gpa, &value, sizeof(T));
    return value;
  }

 private:
  const Region* find(uint64_t gpa, uint64_t length) const;
  void mark_dirty_pages(uint64_t gpa, uint64_t length) const;
  UniqueFd memfd_;
  Mapping mapping_;
  std::vector<Region> regions_;
  // One per region. Marked through a const GuestMemory (devices hold one), hence mutable; the
  // flag sits behind a pointer so that GuestMemory stays movable.
  mutable std::vector<DirtyBitmap> dirty_;
  std::unique_ptr<std::atomic<bool>> dirty_logging_ = std::make_unique<std::atomic<bool>>(false);
};

}  // namespace kdom
