// Tests of guest RAM in the snapshot stream: only non-zero pages are written, in runs of at most
// kPagesPerRecord, across RAM regions; loading them into fresh memory gives the same bytes; a
// record naming pages the domain does not have, or malformed, is refused and writes nothing.
#include "snapshot/memory_records.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

namespace kdom::snapshot {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

// Two regions, as a domain with a PCI hole has: 8 MiB at 0 and 4 MiB at 16 MiB.
std::vector<GuestRange> two_regions() { return {{0, 8 * kMiB}, {16 * kMiB, 4 * kMiB}}; }

struct Stream {
  int fd = memfd_create("snapshot-memory-test", MFD_CLOEXEC);
  ~Stream() { ::close(fd); }
  std::vector<Record> records() {
    ::lseek(fd, 0, SEEK_SET);
    StreamReader reader(fd, "test");
    std::vector<Record> all;
    while (auto record = reader.next())
      if (record->type != RecordType::kEnd) all.push_back(std::move(*record));
    return all;
  }
};

// The progress a save reports: through the pages it reads in steps of one record's pages and
// at each region's end, never going back, ending at the whole of RAM.
TEST(SnapshotMemory, ProgressGoesThroughAllOfRamInOrder) {
  GuestMemory saved(two_regions());
  std::vector<uint8_t> ones(8 * kMiB, 1);
  saved.write(0, ones.data(), ones.size());  // the first region, all of it
  Stream stream;
  std::vector<uint64_t> done;
  {
    StreamWriter writer(stream.fd, "test");
    write_memory(writer, saved, [&](uint64_t bytes, uint64_t total) {
      EXPECT_EQ(total, 12 * kMiB);
      done.push_back(bytes);
    });
    writer.finish();
  }
  ASSERT_FALSE(done.empty());
  EXPECT_EQ(done.front(), kPagesPerRecord * kPageSize);
  EXPECT_EQ(done.back(), 12 * kMiB);
  EXPECT_TRUE(std::is_sorted(done.begin(), done.end()));
  EXPECT_NE(std::find(done.begin(), done.end(), 8 * kMiB), done.end());  // the first region's end
}

// Memory records read straight from the stream into guest RAM (as a restore does) load the
// same pages as whole records do; one naming RAM the domain lacks is refused, nothing written.
TEST(SnapshotMemory, RecordsReadStraightIntoRamLoadTheSame) {
  GuestMemory saved(two_regions());
  for (uint64_t page = 0; page < kPagesPerRecord + 5; ++page) saved.write_object<uint64_t>(page * kPageSize, page + 1);
  saved.write_object<uint8_t>(19 * kMiB, 0x5a);
  Stream stream;
  {
    StreamWriter writer(stream.fd, "test");
    write_memory(writer, saved);
    writer.finish();
  }
  GuestMemory loaded(two_regions());
  ::lseek(stream.fd, 0, SEEK_SET);
  StreamReader reader(stream.fd, "test");
  uint64_t pages = 0;
  while (const auto head = reader.next_head()) {
    if (head->type == RecordType::kEnd) {
      reader.end_body();
      continue;
    }
    pages += load_memory_record(reader, *head, loaded);
  }
  EXPECT_EQ(pages, kPagesPerRecord + 6);
  for (const auto& region : saved.regions())
    EXPECT_EQ(std::memcmp(region.host, loaded.slice(region.range.start, region.range.size).data(), region.range.size), 0);

  // A record for a domain of 1 MiB only: refused before a byte of its pages is read.
  GuestMemory small({{0, kMiB}});
  ::lseek(stream.fd, 0, SEEK_SET);
  StreamReader again(stream.fd, "test");
  const auto head = again.next_head();
  ASSERT_TRUE(head);
  EXPECT_THROW(load_memory_record(again, *head, small), StreamError);
  EXPECT_EQ(small.read_object<uint64_t>(0), 0u);
}

// A save reads only what holds pages: the holes of guest RAM (never written, or discarded)
// stay holes, and count as zero pages.
TEST(SnapshotMemory, ASaveLeavesTheHolesOfRamEmpty) {
  GuestMemory saved(two_regions());
  saved.write_object<uint64_t>(2 * kMiB, 7);
  saved.write_object<uint64_t>(17 * kMiB, 9);
  struct stat before {};
  ASSERT_EQ(fstat(saved.memfd(), &before), 0);
  Stream stream;
  MemoryCounts counts;
  {
    StreamWriter writer(stream.fd, "test");
    counts = write_memory(writer, saved);
    writer.finish();
  }
  struct stat after {};
  ASSERT_EQ(fstat(saved.memfd(), &after), 0);
  EXPECT_EQ(after.st_blocks, before.st_blocks);
  EXPECT_EQ(counts.pages_written, 2u);
  EXPECT_EQ(counts.zero_pages_skipped, 12 * kMiB / kPageSize - 2);
  GuestMemory loaded(two_regions());
  for (const auto& record : stream.records()) load_memory_record(record, loaded);
  EXPECT_EQ(loaded.read_object<uint64_t>(2 * kMiB), 7u);
  EXPECT_EQ(loaded.read_object<uint64_t>(17 * kMiB), 9u);
}

TEST(SnapshotMemory, OnlyNonZeroPagesAreSavedAndTheyLoadBackTheSame) {
  GuestMemory saved(two_regions());
  // A run longer than one record at 1 MiB, single pages, the last page of each region.
  for (uint64_t page = 0; page < kPagesPerRecord + 3; ++page) saved.write_object<uint64_t>(kMiB + page * kPageSize + 8, page + 1);
  saved.write_object<uint32_t>(6 * kMiB, 0xabcd);
  saved.write_object<uint8_t>(8 * kMiB - 1, 0x7f);
  saved.write_object<uint8_t>(20 * kMiB - kPageSize, 0x11);
  Stream stream;
  MemoryCounts counts;
  {
    StreamWriter writer(stream.fd, "test");
    counts = write_memory(writer, saved);
    writer.finish();
  }
  const uint64_t nonzero = kPagesPerRecord + 3 + 3;
  EXPECT_EQ(counts.pages_written, nonzero);
  EXPECT_EQ(counts.zero_pages_skipped, (12 * kMiB) / kPageSize - nonzero);
  EXPECT_EQ(counts.records, 5u);  // the long run split in two, and three single pages

  GuestMemory loaded(two_regions());
  uint64_t pages = 0;
  for (const auto& record : stream.records()) pages += load_memory_record(record, loaded);
  EXPECT_EQ(pages, nonzero);
  for (const auto& region : saved.regions()) {
    const auto other = loaded.slice(region.range.start, region.range.size);
    EXPECT_EQ(std::memcmp(region.host, other.data(), region.range.size), 0) << region.range.start;
  }
}

Record memory_record(uint64_t gpa, uint32_t count, size_t pages_given) {
  Record record{RecordType::kMemory, std::vector<uint8_t>(16 + pages_given * kPageSize, 0x5a)};
  std::memcpy(record.body.data(), &gpa, 8);
  std::memcpy(record.body.data() + 8, &count, 4);
  return record;
}

TEST(SnapshotMemory, RecordsOutsideRamOrMalformedAreRefusedAndWriteNothing) {
  GuestMemory memory(two_regions());
  const struct {
    Record record;
    const char* error;
  } cases[] = {
      {memory_record(9 * kMiB, 1, 1), "does not have"},                     // the hole
      {memory_record(8 * kMiB - kPageSize, 2, 2), "does not have"},         // runs off region 0
      {memory_record(20 * kMiB, 1, 1), "does not have"},                    // past the end
      {memory_record(~uint64_t{0} - kPageSize + 1, 1, 1), "does not have"},  // wraps around
      {memory_record(4097, 1, 1), "does not have"},                          // not page-aligned
      {memory_record(0, 2, 1), "does not match"},                            // count above the bytes
      {memory_record(0, 0, 0), "does not match"},
      {memory_record(0, kPagesPerRecord + 1, kPagesPerRecord + 1), "does not match"},
      {Record{RecordType::kMemory, {1, 2, 3}}, "too short"},
      {Record{RecordType::kVcpu, {}}, "not guest memory"},
  };
  for (const auto& test : cases) {
    try {
      load_memory_record(test.record, memory);
      ADD_FAILURE() << "taken: " << test.error;
    } catch (const StreamError& error) {
      EXPECT_NE(std::string(error.what()).find(test.error), std::string::npos) << error.what();
    }
  }
  for (const auto& region : memory.regions())
    for (uint64_t i = 0; i < region.range.size; i += kPageSize) ASSERT_EQ(region.host[i], 0) << i;
}

// --- a live migration's later rounds: dirty pages, zero-memory records ---------------------

// Bitmap words with `pages` set.
std::vector<uint64_t> bitmap(uint64_t region_pages, std::initializer_list<uint64_t> pages) {
  std::vector<uint64_t> words((region_pages + 63) / 64);
  for (uint64_t page : pages) words[page / 64] |= uint64_t{1} << (page % 64);
  return words;
}

// Applies every record as a restore does: memory and zero-memory records straight from the stream.
void load_all(int fd, const GuestMemory& memory) {
  ::lseek(fd, 0, SEEK_SET);
  StreamReader reader(fd, "test");
  while (const auto head = reader.next_head()) {
    if (head->type == RecordType::kMemory) {
      load_memory_record(reader, *head, memory);
    } else if (head->type == RecordType::kZeroMemory) {
      load_zero_memory_record(reader, *head, memory);
    } else {
      std::vector<uint8_t> body(head->length);
      reader.read_body(body);
      reader.end_body();
    }
  }
}

// Only the dirty pages are written: data pages as memory records, zero pages and holes as
// zero-memory records (a hole is not read, so it stays a hole); loaded over a destination
// that holds older bytes, they give the source's RAM.
TEST(SnapshotMemory, DirtyPagesGoAsDataOrAsZeroAndLoadBackTheSame) {
  GuestMemory source(two_regions());
  const uint64_t pages0 = 8 * kMiB / kPageSize;
  for (uint64_t page : {1, 2, 3, 7}) source.write_object<uint64_t>(page * kPageSize + 16, page);
  std::vector<uint8_t> zeros(kPageSize, 0);
  source.write(5 * kPageSize, zeros.data(), zeros.size());  // a page that holds zeros (populated)
  // Page 9 and 10: holes (never written). Page 3 is dirty, 4 is not.
  struct stat before {};
  ASSERT_EQ(fstat(source.memfd(), &before), 0);

  Stream stream;
  MemoryCounts counts;
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  {
    StreamWriter writer(stream.fd, "test");
    counts = write_dirty_memory(writer, source, 0, bitmap(pages0, {1, 2, 3, 5, 7, 9, 10}), GuestActivity::kRunning,
                                [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
    counts += write_dirty_memory(writer, source, 1, bitmap(4 * kMiB / kPageSize, {0}), GuestActivity::kStopped);
    writer.finish();
  }
  struct stat after {};
  ASSERT_EQ(fstat(source.memfd(), &after), 0);
  EXPECT_EQ(after.st_blocks, before.st_blocks) << "a hole was read";
  EXPECT_EQ(counts.pages_written, 4u);    // 1-3, 7
  EXPECT_EQ(counts.zero_pages_sent, 4u);  // 5, 9-10, region 1's page 0 (a hole)
  EXPECT_EQ(counts.records, 5u);          // 1-3 | 5 | 7 | 9-10 | region 1's 0
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(7 * kPageSize, 7 * kPageSize));

  const auto records = stream.records();
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[1].type, RecordType::kZeroMemory);
  EXPECT_EQ(records[1].body.size(), 16u);

  // The destination as an earlier round left it: every page of both regions holds 0xee.
  GuestMemory destination(two_regions());
  for (const auto& region : destination.regions()) std::memset(region.host, 0xee, region.range.size);
  load_all(stream.fd, destination);
  for (uint64_t page : {1, 2, 3, 7})
    EXPECT_EQ(destination.read_object<uint64_t>(page * kPageSize + 16), page);
  for (uint64_t gpa : {5 * kPageSize, 9 * kPageSize, 10 * kPageSize + kPageSize - 8, 16 * kMiB})
    EXPECT_EQ(destination.read_object<uint64_t>(gpa), 0u) << gpa;
  EXPECT_EQ(destination.read_object<uint8_t>(4 * kPageSize), 0xee);  // not dirty: untouched
  EXPECT_EQ(destination.read_object<uint8_t>(16 * kMiB + kPageSize), 0xee);
}

// A run of data pages is split at a record's page limit; a run of zero pages is one record.
TEST(SnapshotMemory, DirtyRunsAreSplitAtTheRecordLimit) {
  GuestMemory source(two_regions());
  const uint64_t pages0 = 8 * kMiB / kPageSize;
  std::vector<uint64_t> all(pages0 / 64, ~uint64_t{0});
  for (uint64_t page = 0; page < kPagesPerRecord + 10; ++page) source.write_object<uint8_t>(page * kPageSize, 1);
  Stream stream;
  MemoryCounts counts;
  {
    StreamWriter writer(stream.fd, "test");
    counts = write_dirty_memory(writer, source, 0, all, GuestActivity::kStopped);
    writer.finish();
  }
  EXPECT_EQ(counts.pages_written, kPagesPerRecord + 10);
  EXPECT_EQ(counts.zero_pages_sent, pages0 - kPagesPerRecord - 10);
  EXPECT_EQ(counts.records, 3u);
}

// With the guest running (a thread rewriting pages as fast as it can), every record still
// carries the bytes its checksum is of: the stream reads back whole.
TEST(SnapshotMemory, PagesChangingWhileTheyAreWrittenGiveWholeRecords) {
  GuestMemory source(two_regions());
  constexpr uint64_t kBusyPages = 256;
  for (uint64_t page = 0; page < kBusyPages; ++page) source.write_object<uint64_t>(page * kPageSize, 1);
  std::atomic<bool> stop{false};
  std::thread guest([&] {
    for (uint64_t i = 1; !stop; ++i) {
      const uint64_t gpa = (i * 7919 % (kBusyPages * kPageSize / 8)) * 8;
      std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(source.slice(gpa, 8).data()))
          .store(i | 1, std::memory_order_relaxed);
    }
  });
  Stream stream;
  {
    StreamWriter writer(stream.fd, "test");
    for (int round = 0; round < 20; ++round) {
      write_memory(writer, source, {}, GuestActivity::kRunning);
      write_dirty_memory(writer, source, 0, bitmap(8 * kMiB / kPageSize, {0, 1, 2, 3, 100, 101}),
                         GuestActivity::kRunning);
    }
    writer.finish();
  }
  stop = true;
  guest.join();
  EXPECT_NO_THROW(stream.records());
}

// A zero-memory record's body, cut or padded to `body_bytes` (a malformed one).
Record zero_record(uint64_t gpa, uint32_t count, size_t body_bytes = 16) {
  Record record{RecordType::kZeroMemory, std::vector<uint8_t>(16, 0)};
  std::memcpy(record.body.data(), &gpa, 8);
  std::memcpy(record.body.data() + 8, &count, 4);
  record.body.resize(body_bytes, 0);
  return record;
}

TEST(SnapshotMemory, ZeroRecordsOutsideRamOrMalformedAreRefusedAndZeroNothing) {
  GuestMemory memory(two_regions());
  for (const auto& region : memory.regions()) std::memset(region.host, 0x5a, region.range.size);
  const struct {
    Record record;
    const char* error;
  } cases[] = {
      {zero_record(9 * kMiB, 1), "does not have"},                        // the hole
      {zero_record(8 * kMiB - kPageSize, 2), "does not have"},            // runs off region 0
      {zero_record(0, 8 * kMiB / kPageSize + 1), "does not have"},        // one page too many
      {zero_record(20 * kMiB, 1), "does not have"},                       // past the end
      {zero_record(~uint64_t{0} - kPageSize + 1, 1), "does not have"},    // wraps around
      {zero_record(~uint64_t{0} - kPageSize + 1, UINT32_MAX), "does not have"},
      {zero_record(4097, 1), "does not have"},                            // not page-aligned
      {zero_record(0, 0), "no pages"},
      {zero_record(0, 1, 24), "not 16"},
      {zero_record(0, 1, 8), "not 16"},
      {Record{RecordType::kMemory, std::vector<uint8_t>(16)}, "not a zero-memory record"},
  };
  for (const auto& test : cases) {
    try {
      load_zero_memory_record(test.record, memory);
      ADD_FAILURE() << "taken: " << test.error;
    } catch (const StreamError& error) {
      EXPECT_NE(std::string(error.what()).find(test.error), std::string::npos) << error.what();
    }
  }
  for (const auto& region : memory.regions())
    for (uint64_t i = 0; i < region.range.size; i += kPageSize) ASSERT_EQ(region.host[i], 0x5a) << i;
  EXPECT_EQ(load_zero_memory_record(zero_record(16 * kMiB, 2), memory), 2u);
  EXPECT_EQ(memory.read_object<uint8_t>(16 * kMiB + kPageSize), 0);
  EXPECT_EQ(memory.read_object<uint8_t>(16 * kMiB + 2 * kPageSize), 0x5a);
}

}  // namespace
}  // namespace kdom::snapshot
