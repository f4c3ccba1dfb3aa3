// DirtyBitmap: one bit per 4 KiB page of a guest RAM region, set by whichever thread wrote the
// page (a device back end, an io_uring completion's owner, the balloon) and taken, bits
// cleared, by the thread that copies dirty pages away (live migration). Marking is lock-free,
// one atomic OR per 64 pages, so it may sit on the I/O path; a page marked while the bitmap is
// being taken is either in what take() returns or stays set for the next take.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace kdom {

class DirtyBitmap {
 public:
  static constexpr uint64_t kPageSize = 4096;

  explicit DirtyBitmap(uint64_t pages);

  uint64_t pages() const { return pages_; }
  // Sets the bits of pages [first, first + count); pages past the end are ignored. The marks
  // are release operations: whoever takes them sees the writes made before the mark.
  void mark(uint64_t first, uint64_t count);
  // The bitmap's words (bit i of word w: page 64 * w + i), each cleared as it is read.
  std::vector<uint64_t> take();
  void clear();

 private:
  uint64_t pages_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace kdom
