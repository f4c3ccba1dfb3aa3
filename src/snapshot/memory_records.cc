// Guest RAM to memory records and back.
#include "snapshot/memory_records.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <vector>

namespace kdom::snapshot {

namespace {

constexpr size_t kRecordHeadBytes = 16;  // address, page count, reserved

// Each byte equals the next and the first is zero: one pass of the C library's vectorized
// memcmp, which stops at the first difference (most non-zero pages differ early).
bool all_zero(const uint8_t* page) { return page[0] == 0 && std::memcmp(page, page + 1, kPageSize - 1) == 0; }

// A zero-memory record names as many pages as its count field holds.
constexpr uint64_t kZeroPagesPerRecord = std::numeric_limits<uint32_t>::max();

// `copy`, when given (the guest runs), takes the pages first: the record's checksum and the
// bytes written must be the same bytes, and a running guest may change them between the two.
void write_run(StreamWriter& writer, uint64_t gpa, const uint8_t* pages, uint32_t count, MemoryCounts& counts,
               std::vector<uint8_t>* copy) {
  uint8_t head[kRecordHeadBytes] = {};
  std::memcpy(head, &gpa, 8);
  std::memcpy(head + 8, &count, 4);
  const uint64_t bytes = uint64_t{count} * kPageSize;
  if (copy) {
    copy->resize(bytes);
    std::memcpy(copy->data(), pages, bytes);
    pages = copy->data();
  }
  writer.write(RecordType::kMemory, {std::span<const uint8_t>(head), std::span(pages, bytes)});
  counts.pages_written += count;
  ++counts.records;
}

void write_zero_run(StreamWriter& writer, uint64_t gpa, uint32_t count, MemoryCounts& counts) {
  uint8_t head[kRecordHeadBytes] = {};
  std::memcpy(head, &gpa, 8);
  std::memcpy(head + 8, &count, 4);
  writer.write(RecordType::kZeroMemory, std::span<const uint8_t>(head));
  counts.zero_pages_sent += count;
  ++counts.records;
}

// The guest RAM a memory record's body names, from its first kRecordHeadBytes bytes and its
// whole length: throws StreamError unless it is whole pages, as many as the body holds, all
// inside guest RAM.
GuestRange memory_record_pages(const uint8_t* record_head, uint64_t body_bytes, const GuestMemory& memory) {
  uint64_t gpa;
  uint32_t count;
  std::memcpy(&gpa, record_head, 8);
  std::memcpy(&count, record_head + 8, 4);
  const uint64_t length = uint64_t{count} * kPageSize;
  if (count == 0 || count > kPagesPerRecord || body_bytes != kRecordHeadBytes + length)
    throw StreamError("a memory record's page count (" + std::to_string(count) + ") does not match its " +
                      std::to_string(body_bytes) + " bytes");
  if (gpa % kPageSize != 0 || !memory.contains(gpa, length))
    throw StreamError("a memory record names guest RAM that this domain does not have (" + std::to_string(count) +
                      " pages at " + std::to_string(gpa) + ")");
  return {gpa, length};
}

// The same for a zero-memory record, whose body is the head alone.
GuestRange zero_record_pages(const uint8_t* record_head, const GuestMemory& memory) {
  uint64_t gpa;
  uint32_t count;
  std::memcpy(&gpa, record_head, 8);
  std::memcpy(&count, record_head + 8, 4);
  const uint64_t length = uint64_t{count} * kPageSize;
  if (count == 0) throw StreamError("a zero-memory record names no pages");
  if (gpa % kPageSize != 0 || !memory.contains(gpa, length))
    throw StreamError("a zero-memory record names guest RAM that this domain does not have (" +
                      std::to_string(count) + " pages at " + std::to_string(gpa) + ")");
  return {gpa, length};
}

// Dirty pages in order, each sorted into a run of data pages or of zero pages: a run ends at a
// page that is not dirty, a page of the other kind, or the most one record holds.
class DirtyRunWriter {
 public:
  DirtyRunWriter(StreamWriter& writer, const GuestMemory::Region& region, MemoryCounts& counts,
                 std::vector<uint8_t>* copy)
      : writer_(writer), region_(region), counts_(counts), copy_(copy) {}

  // Page `page` of the region, dirty; `zero`: its bytes are all zero. Returns whether a record
  // was written.
  bool add(uint64_t page, bool zero) {
    bool wrote = false;
    if (length_ > 0 && (page != start_ + length_ || zero != zero_ ||
                        length_ == (zero_ ? kZeroPagesPerRecord : uint64_t{kPagesPerRecord})))
      wrote = flush();
    if (length_ == 0) {
      start_ = page;
      zero_ = zero;
    }
    ++length_;
    return wrote;
  }

  bool flush() {
    if (length_ == 0) return false;
    const uint64_t gpa = region_.range.start + start_ * kPageSize;
    const auto count = static_cast<uint32_t>(length_);
    if (zero_)
      write_zero_run(writer_, gpa, count, counts_);
    else
      write_run(writer_, gpa, region_.host + start_ * kPageSize, count, counts_, copy_);
    length_ = 0;
    return true;
  }

 private:
  StreamWriter& writer_;
  const GuestMemory::Region& region_;
  MemoryCounts& counts_;
  std::vector<uint8_t>* copy_;
  uint64_t start_ = 0;
  uint64_t length_ = 0;
  bool zero_ = false;
};

}  // namespace

MemoryCounts write_memory(StreamWriter& writer, const GuestMemory& memory, const MemoryProgress& progress,
                          GuestActivity guest) {
  MemoryCounts counts;
  std::vector<uint8_t> copy;
  uint64_t done_before_region = 0;
  for (const auto& region : memory.regions()) {
    const uint64_t region_pages = region.range.size / kPageSize;
    uint64_t populated_pages = 0;
    // Only what holds pages is looked at: a hole reads as zeros (and reading it would fill it).
    for (const auto& range : memory.populated(region)) {
      const uint64_t first = (range.start - region.range.start) / kPageSize;
      const uint64_t pages = range.size / kPageSize;
      populated_pages += pages;
      uint64_t run_start = 0;
      uint32_t run_length = 0;
      for (uint64_t page = first; page <= first + pages; ++page) {
        if (progress && page % kPagesPerRecord == 0 && page > first)
          progress(done_before_region + page * kPageSize, memory.total_size());
        const bool end = page == first + pages;
        const bool zero = !end && all_zero(region.host + page * kPageSize);
        if ((end || zero || run_length == kPagesPerRecord) && run_length > 0) {
          write_run(writer, region.range.start + run_start * kPageSize, region.host + run_start * kPageSize, run_length,
                    counts, guest == GuestActivity::kRunning ? &copy : nullptr);
          run_length = 0;
        }
        if (end) break;
        if (zero) {
          ++counts.zero_pages_skipped;
          continue;
        }
        if (run_length == 0) run_start = page;
        ++run_length;
      }
    }
    counts.zero_pages_skipped += region_pages - populated_pages;
    done_before_region += region.range.size;
    if (progress) progress(done_before_region, memory.total_size());
  }
  return counts;
}

MemoryCounts& MemoryCounts::operator+=(const MemoryCounts& other) {
  pages_written += other.pages_written;
  zero_pages_skipped += other.zero_pages_skipped;
  zero_pages_sent += other.zero_pages_sent;
  records += other.records;
  return *this;
}

MemoryCounts write_dirty_memory(StreamWriter& writer, const GuestMemory& memory, size_t region_index,
                                std::span<const uint64_t> dirty, GuestActivity guest, const MemoryProgress& progress) {
  const GuestMemory::Region& region = memory.regions().at(region_index);
  const uint64_t region_pages = region.range.size / kPageSize;
  uint64_t dirty_pages = 0;
  for (size_t w = 0; w < dirty.size() && w * 64 < region_pages; ++w) {
    uint64_t bits = dirty[w];
    if ((w + 1) * 64 > region_pages) bits &= (uint64_t{1} << (region_pages % 64)) - 1;
    dirty_pages += static_cast<uint64_t>(std::popcount(bits));
  }
  MemoryCounts counts;
  if (dirty_pages == 0) return counts;
  const std::vector<GuestRange> populated = memory.populated(region);
  auto data = populated.begin();  // the first populated range not wholly before the page
  std::vector<uint8_t> copy;
  DirtyRunWriter runs(writer, region, counts, guest == GuestActivity::kRunning ? &copy : nullptr);
  uint64_t done = 0;
  for (size_t w = 0; w < dirty.size() && w * 64 < region_pages; ++w) {
    for (uint64_t bits = dirty[w]; bits != 0; bits &= bits - 1) {
      const uint64_t page = w * 64 + static_cast<uint64_t>(std::countr_zero(bits));
      if (page >= region_pages) break;
      const uint64_t gpa = region.range.start + page * kPageSize;
      while (data != populated.end() && data->end() <= gpa) ++data;
      const bool hole = data == populated.end() || gpa < data->start;
      const bool written = runs.add(page, hole || all_zero(region.host + page * kPageSize));
      ++done;
      if (written && progress) progress(done * kPageSize, dirty_pages * kPageSize);
    }
  }
  runs.flush();
  if (progress) progress(dirty_pages * kPageSize, dirty_pages * kPageSize);
  return counts;
}

uint64_t load_memory_record(const Record& record, const GuestMemory& memory) {
  if (record.type != RecordType::kMemory)
    throw StreamError("a " + record_type_name(static_cast<uint32_t>(record.type)) + " record is not guest memory");
  if (record.body.size() < kRecordHeadBytes) throw StreamError("a memory record is too short for its address and count");
  const auto pages = memory_record_pages(record.body.data(), record.body.size(), memory);
  memory.write(pages.start, record.body.data() + kRecordHeadBytes, pages.size);
  return pages.size / kPageSize;
}

uint64_t load_memory_record(StreamReader& reader, const RecordHead& head, const GuestMemory& memory) {
  if (head.type != RecordType::kMemory)
    throw StreamError("a " + record_type_name(static_cast<uint32_t>(head.type)) + " record is not guest memory");
  if (head.length < kRecordHeadBytes) throw StreamError("a memory record is too short for its address and count");
  uint8_t record_head[kRecordHeadBytes];
  reader.read_body(record_head);
  const auto pages = memory_record_pages(record_head, head.length, memory);
  reader.read_body(memory.slice(pages.start, pages.size));
  reader.end_body();
  return pages.size / kPageSize;
}

uint64_t load_zero_memory_record(const Record& record, const GuestMemory& memory) {
  if (record.type != RecordType::kZeroMemory)
    throw StreamError("a " + record_type_name(static_cast<uint32_t>(record.type)) + " record is not a zero-memory record");
  if (record.body.size() != kRecordHeadBytes)
    throw StreamError("a zero-memory record has " + std::to_string(record.body.size()) + " bytes, not " +
                      std::to_string(kRecordHeadBytes));
  const auto pages = zero_record_pages(record.body.data(), memory);
  memory.discard(pages.start, pages.size);
  return pages.size / kPageSize;
}

uint64_t load_zero_memory_record(StreamReader& reader, const RecordHead& head, const GuestMemory& memory) {
  if (head.type != RecordType::kZeroMemory)
    throw StreamError("a " + record_type_name(static_cast<uint32_t>(head.type)) + " record is not a zero-memory record");
  if (head.length != kRecordHeadBytes)
    throw StreamError("a zero-memory record has " + std::to_string(head.length) + " bytes, not " +
                      std::to_string(kRecordHeadBytes));
  uint8_t record_head[kRecordHeadBytes];
  reader.read_body(record_head);
  reader.end_body();  // the checksum before anything is zeroed: zeroing cannot be undone
  const auto pages = zero_record_pages(record_head, memory);
  memory.discard(pages.start, pages.size);
  return pages.size / kPageSize;
}

}  // namespace kdom::snapshot
