// The per-page dirty bitmap of a guest RAM region.
#include "memory/dirty_bitmap.h"

#include <algorithm>

namespace kdom {

namespace {
constexpr uint64_t kBitsPerWord = 64;

uint64_t word_count(uint64_t pages) { return (pages + kBitsPerWord - 1) / kBitsPerWord; }

// Bits [from, to) of one word, 0 <= from < to <= 64.
uint64_t bit_range(uint64_t from, uint64_t to) {
  const uint64_t high = to == kBitsPerWord ? ~uint64_t{0} : (uint64_t{1} << to) - 1;
  return high & ~((uint64_t{1} << from) - 1);
}
}  // namespace

DirtyBitmap::DirtyBitmap(uint64_t pages)
    : pages_(pages), words_(std::make_unique<std::atomic<uint64_t>[]>(word_count(pages))) {}

void DirtyBitmap::mark(uint64_t first, uint64_t count) {
  if (first >= pages_ || count == 0) return;
  const uint64_t end = first + std::min(count, pages_ - first);
  for (uint64_t page = first; page < end;) {
    const uint64_t word = page / kBitsPerWord;
    const uint64_t to = std::min(end - word * kBitsPerWord, kBitsPerWord);
    const uint64_t bits = bit_range(page % kBitsPerWord, to);
    // Always the read-modify-write, even when the bits look set: a take() that clears them
    // right after a plain load saw them would copy the page without this mark's writes, and
    // the page would not be marked again. Ordered against take()'s exchange, the OR is either
    // taken with the writes visible or left for the next take.
    words_[word].fetch_or(bits, std::memory_order_release);
    page = (word + 1) * kBitsPerWord;
  }
}

std::vector<uint64_t> DirtyBitmap::take() {
  std::vector<uint64_t> taken(word_count(pages_));
  for (size_t i = 0; i < taken.size(); ++i) {
    // Most words are clear: only those with bits are exchanged (and so written).
    if (words_[i].load(std::memory_order_relaxed) != 0) taken[i] = words_[i].exchange(0, std::memory_order_acq_rel);
  }
  return taken;
}

void DirtyBitmap::clear() {
  for (uint64_t i = 0; i < word_count(pages_); ++i) words_[i].store(0, std::memory_order_relaxed);
}

}  // namespace kdom
