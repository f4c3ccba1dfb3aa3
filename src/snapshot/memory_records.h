// Guest RAM in the snapshot stream: memory records of the pages that are not all zero (a
// restored domain starts from zeroed RAM, so zero pages need no bytes), and their loading back
// into a domain's memory. A record's body is the guest-physical address of its first page
// (8 bytes), the page count (4 bytes), 4 reserved bytes, then the pages. A live migration's
// later rounds send only the pages dirtied since, and a page sent before that became zero
// must reach the destination as zero: a zero-memory record says so, the same 16 bytes of head
// with no pages. A record read from a stream is untrusted: its address and length must lie
// wholly inside the domain's RAM.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "memory/guest_memory.h"
#include "snapshot/stream.h"

namespace kdom::snapshot {

inline constexpr uint64_t kPageSize = 4096;
// Pages per record at most: 4 MiB of RAM, well under the stream's record limit.
inline constexpr uint32_t kPagesPerRecord = 1024;

struct MemoryCounts {
  uint64_t pages_written = 0;       // in memory records
  uint64_t zero_pages_skipped = 0;  // no record: the destination's RAM is zero there already
  uint64_t zero_pages_sent = 0;     // in zero-memory records
  uint64_t records = 0;
  MemoryCounts& operator+=(const MemoryCounts& other);
};

// How far a save has come through guest RAM: bytes of RAM looked at so far, of all of it.
using MemoryProgress = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

// Whether the guest may write its RAM while it is written to the stream (a live migration's
// pre-copy rounds): each run of pages is then copied before its record is written, so that
// the record's checksum is of the bytes it carries (the page itself is dirty again, and sent
// again in a later round).
enum class GuestActivity { kStopped, kRunning };

// Writes every RAM region of `memory` as memory records (runs of non-zero pages, at most
// kPagesPerRecord each). Only the parts of RAM that hold pages are read (GuestMemory::
// populated): the rest is zero and counts as zero pages skipped. For a save the vCPUs and
// devices must be stopped: pages changing meanwhile would be saved torn (a live migration's
// round 1 runs with the guest running, kRunning, and sends the pages it changes again later).
// `progress`, if given, is called as the save goes through RAM (every kPagesPerRecord pages of
// a populated part, and at each region's end), the last time with all of RAM done.
MemoryCounts write_memory(StreamWriter& writer, const GuestMemory& memory, const MemoryProgress& progress = {},
                          GuestActivity guest = GuestActivity::kStopped);

// Writes the pages of region `region` of `memory` whose bits are set in `dirty` (bit i of
// word w: the region's page 64 * w + i; bits past the region's end are ignored): runs of
// pages that are not all zero as memory records, runs of zero pages as zero-memory records.
// Pages in the holes of RAM (GuestMemory::populated) are zero without being read (reading
// would give them pages again: a page the balloon gave back must stay given back). The guest
// may run meanwhile (kRunning; its writes go to the next round); `progress`, if given, is
// called after each record with the bytes of dirty pages gone through so far, of all of them.
MemoryCounts write_dirty_memory(StreamWriter& writer, const GuestMemory& memory, size_t region,
                                std::span<const uint64_t> dirty, GuestActivity guest,
                                const MemoryProgress& progress = {});

// Copies a memory record's pages into `memory`; throws StreamError when the record is not a
// memory record, is malformed, or names pages outside guest RAM (nothing is written then).
// Returns the number of pages loaded.
uint64_t load_memory_record(const Record& record, const GuestMemory& memory);
// The same straight from the stream, for a memory record whose head `reader` has just read
// (StreamReader::next_head): the pages are read into guest RAM with no buffer between, and the
// body's checksum is checked after them (a restore that fails it throws the domain away).
uint64_t load_memory_record(StreamReader& reader, const RecordHead& head, const GuestMemory& memory);

// Zeroes the pages a zero-memory record names (their host memory is given back, as the
// balloon's is: they read as zero); the same checks as for a memory record, and the body's
// checksum is checked before anything is zeroed. Returns the number of pages zeroed.
uint64_t load_zero_memory_record(const Record& record, const GuestMemory& memory);
uint64_t load_zero_memory_record(StreamReader& reader, const RecordHead& head, const GuestMemory& memory);

}  // namespace kdom::snapshot
