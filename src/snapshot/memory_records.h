// Guest RAM in the snapshot stream: memory records of the pages that are not all zero (a
// restored domain starts from zeroed RAM, so zero pages need no bytes), and their loading back
// into a domain's memory. A record's body is the guest-physical address of its first page
// (8 bytes), the page count (4 bytes), 4 reserved bytes, then the pages. A record read from a
// stream is untrusted: its address and length must lie wholly inside the domain's RAM.
#pragma once

#include <cstdint>
#include <functional>

#include "memory/guest_memory.h"
#include "snapshot/stream.h"

namespace kdom::snapshot {

inline constexpr uint64_t kPageSize = 4096;
// Pages per record at most: 4 MiB of RAM, well under the stream's record limit.
inline constexpr uint32_t kPagesPerRecord = 1024;

struct MemoryCounts {
  uint64_t pages_written = 0;
  uint64_t zero_pages_skipped = 0;
  uint64_t records = 0;
};

// How far a save has come through guest RAM: bytes of RAM looked at so far, of all of it.
using MemoryProgress = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

// Writes every RAM region of `memory` as memory records (runs of non-zero pages, at most
// kPagesPerRecord each). Only the parts of RAM that hold pages are read (GuestMemory::
// populated): the rest is zero and counts as zero pages skipped. The vCPUs and devices must be
// stopped: pages changing meanwhile would be saved torn. `progress`, if given, is called as the
// save goes through RAM (every kPagesPerRecord pages of a populated part, and at each
// region's end), the last time with all of RAM done.
MemoryCounts write_memory(StreamWriter& writer, const GuestMemory& memory, const MemoryProgress& progress = {});

// Copies a memory record's pages into `memory`; throws StreamError when the record is not a
// memory record, is malformed, or names pages outside guest RAM (nothing is written then).
// Returns the number of pages loaded.
uint64_t load_memory_record(const Record& record, const GuestMemory& memory);
// The same straight from the stream, for a memory record whose head `reader` has just read
// (StreamReader::next_head): the pages are read into guest RAM with no buffer between, and the
// body's checksum is checked after them (a restore that fails it throws the domain away).
uint64_t load_memory_record(StreamReader& reader, const RecordHead& head, const GuestMemory& memory);

}  // namespace kdom::snapshot
