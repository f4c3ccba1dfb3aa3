// Guest RAM to memory records and back.
#include "snapshot/memory_records.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace kdom::snapshot {

namespace {

constexpr size_t kRecordHeadBytes = 16;  // address, page count, reserved

// Each byte equals the next and the first is zero: one pass of the C library's vectorized
// memcmp, which stops at the first difference (most non-zero pages differ early).
bool all_zero(const uint8_t* page) { return page[0] == 0 && std::memcmp(page, page + 1, kPageSize - 1) == 0; }

void write_run(StreamWriter& writer, uint64_t gpa, const uint8_t* pages, uint32_t count, MemoryCounts& counts) {
  uint8_t head[kRecordHeadBytes] = {};
  std::memcpy(head, &gpa, 8);
  std::memcpy(head + 8, &count, 4);
  writer.write(RecordType::kMemory, {std::span<const uint8_t>(head), std::span(pages, uint64_t{count} * kPageSize)});
  counts.pages_written += count;
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

}  // namespace

MemoryCounts write_memory(StreamWriter& writer, const GuestMemory& memory, const MemoryProgress& progress) {
  MemoryCounts counts;
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
                    counts);
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

}  // namespace kdom::snapshot
