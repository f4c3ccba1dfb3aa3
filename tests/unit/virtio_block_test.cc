// Tests of the virtio-blk device logic: requests are built by hand in a 4 MiB GuestMemory as a
// driver would (descriptor table, available ring, buffers), against a temporary disk image, and
// served with BlockDevice::process_queue (or by its queue workers, through notify_queue); results are checked in the used ring, the status
// byte, the guest buffers and the image file itself.
#include "devices/virtio/block.h"

#include "base/unique_fd.h"
#include "eventually.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <fstream>
#include <string>
#include <vector>

namespace kdom::devices::virtio {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMemorySize = 4 << 20;
constexpr uint64_t kDescTable = 0x1000;
constexpr uint64_t kAvailRing = 0x2000;
constexpr uint64_t kUsedRing = 0x3000;
constexpr uint32_t kQueueSize = 64;
constexpr uint64_t kBufferArea = 0x10000;
constexpr uint64_t kDiskSize = 1 << 20;  // 2048 sectors

// A descriptor as the test lays it out: guest address, length, device-writable or not.
struct Buf {
  uint64_t addr;
  uint32_t len;
  bool writable;
};

struct Result {
  uint32_t used_len = 0;
  uint8_t status = 0xee;
};

uint8_t pattern_byte(uint64_t offset) { return static_cast<uint8_t>(offset * 7 + offset / 512 + 1); }

class VirtioBlockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/kdom-virtio-block-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir = dir_template;
    disk_path = dir + "/disk.img";
    std::vector<uint8_t> contents(kDiskSize);
    for (uint64_t i = 0; i < kDiskSize; ++i) contents[i] = pattern_byte(i);
    write_file(disk_path, contents);
    // Fill guest RAM with a marker so that anything the device writes shows.
    std::vector<uint8_t> marker(kMemorySize - kBufferArea, 0xcc);
    memory.write(kBufferArea, marker.data(), marker.size());
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  static void write_file(const std::string& path, const std::vector<uint8_t>& contents) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(contents.data()), static_cast<std::streamsize>(contents.size()));
  }
  std::vector<uint8_t> file_bytes(uint64_t offset, uint64_t length) {
    std::vector<uint8_t> bytes(length);
    std::ifstream in(disk_path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(length));
    EXPECT_EQ(in.gcount(), static_cast<std::streamsize>(length));
    return bytes;
  }
  std::vector<uint8_t> pattern(uint64_t offset, uint64_t length) {
    std::vector<uint8_t> bytes(length);
    for (uint64_t i = 0; i < length; ++i) bytes[i] = pattern_byte(offset + i);
    return bytes;
  }
  std::vector<uint8_t> guest_bytes(uint64_t gpa, uint64_t length) {
    std::vector<uint8_t> bytes(length);
    memory.read(gpa, bytes.data(), length);
    return bytes;
  }

  BlockDevice& device(bool read_only = false, const std::string& id = "kdom-test-disk", uint16_t queues = 1) {
    dev = std::make_unique<BlockDevice>(BlockDiskConfig{disk_path, read_only, id, queues, {}, {}});
    return *dev;
  }

  // Guest memory for a buffer of `len` bytes (holding the 0xcc marker until written).
  uint64_t alloc(uint64_t len) {
    const uint64_t gpa = next_buffer;
    next_buffer += (len + 15) & ~uint64_t{15};
    return gpa;
  }
  uint64_t header(uint32_t type, uint64_t sector) {
    const uint64_t gpa = alloc(16);
    memory.write_object(gpa, BlockRequestHeader{type, 0, sector});
    return gpa;
  }
  uint64_t data(const std::vector<uint8_t>& bytes) {
    const uint64_t gpa = alloc(bytes.size());
    memory.write(gpa, bytes.data(), bytes.size());
    return gpa;
  }

  // Links `bufs` into a chain, makes it available, and returns its head.
  uint16_t submit(const std::vector<Buf>& bufs) {
    const auto head = static_cast<uint16_t>(next_desc);
    for (size_t i = 0; i < bufs.size(); ++i) {
      const uint32_t index = (next_desc + i) % kQueueSize;
      const bool last = i + 1 == bufs.size();
      const uint16_t flags = static_cast<uint16_t>((last ? 0 : kVirtqDescFlagNext) |
                                                   (bufs[i].writable ? kVirtqDescFlagWrite : 0));
      memory.write_object(kDescTable + 16 * uint64_t{index},
                          VirtqDescriptor{bufs[i].addr, bufs[i].len, flags,
                                          static_cast<uint16_t>((index + 1) % kQueueSize)});
    }
    next_desc = static_cast<uint32_t>((next_desc + bufs.size()) % kQueueSize);
    make_available(head);
    return head;
  }
  void make_available(uint16_t head) {
    const auto idx = memory.read_object<uint16_t>(kAvailRing + 2);
    memory.write_object<uint16_t>(kAvailRing + 4 + 2 * uint64_t{idx % kQueueSize}, head);
    memory.write_object<uint16_t>(kAvailRing + 2, static_cast<uint16_t>(idx + 1));
  }
  uint16_t used_idx() { return memory.read_object<uint16_t>(kUsedRing + 2); }
  VirtqUsedElement used_element(uint32_t slot) {
    return memory.read_object<VirtqUsedElement>(kUsedRing + 4 + 8 * uint64_t{slot % kQueueSize});
  }

  BlockDevice::QueueResult process() { return dev->process_queue(memory, queue); }

  // Submits a chain whose status byte is its last writable byte, processes the queue and
  // returns the used length and the status byte. Expects exactly one used entry for `head`.
  Result run(const std::vector<Buf>& bufs) {
    const uint16_t before = used_idx();
    const uint16_t head = submit(bufs);
    const auto result = process();
    EXPECT_FALSE(result.queue_error) << *result.queue_error;
    EXPECT_EQ(used_idx(), static_cast<uint16_t>(before + 1));
    const VirtqUsedElement used = used_element(before);
    EXPECT_EQ(used.id, head);
    Result out;
    out.used_len = used.len;
    const Buf& last = bufs.back();
    if (last.writable && last.len > 0) out.status = memory.read_object<uint8_t>(last.addr + last.len - 1);
    return out;
  }
  // The usual framing: header, optional data buffer, status byte.
  Result simple(uint32_t type, uint64_t sector, uint64_t data_gpa = 0, uint32_t data_len = 0,
                bool data_writable = false) {
    std::vector<Buf> bufs{{header(type, sector), 16, false}};
    if (data_len != 0) bufs.push_back({data_gpa, data_len, data_writable});
    bufs.push_back({alloc(1), 1, true});
    return run(bufs);
  }
  Result segments(uint32_t type, const std::vector<BlockDiscardSegment>& segs) {
    const uint64_t gpa = alloc(16 * segs.size());
    for (size_t i = 0; i < segs.size(); ++i) memory.write_object(gpa + 16 * i, segs[i]);
    return simple(type, 0, gpa, static_cast<uint32_t>(16 * segs.size()), false);
  }

  // Reads 128 KiB at sector 40 into two guest buffers through a worker; checks every byte.
  void read_128k_at_sector_40();
  // Drops the image's bytes [offset, offset + length) from the page cache (length 0: to the
  // end), where the file system can; only clean pages are dropped, so it syncs first.
  void drop_from_page_cache(off_t offset, off_t length) {
    UniqueFd fd(::open(disk_path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::fdatasync(fd.get()), 0);
    ASSERT_EQ(::posix_fadvise(fd.get(), offset, length, POSIX_FADV_DONTNEED), 0);
  }

  std::string dir;
  std::string disk_path;
  GuestMemory memory{std::vector<GuestRange>{{0, kMemorySize}}};
  Virtqueue queue{memory, VirtqueueConfig{kQueueSize, kDescTable, kAvailRing, kUsedRing, false, true}};
  std::unique_ptr<BlockDevice> dev;
  uint64_t next_buffer = kBufferArea;
  uint32_t next_desc = 0;
};

// --- requests ------------------------------------------------------------------------------

TEST_F(VirtioBlockTest, ReadFillsGuestBuffers) {
  device();
  const uint64_t buf = alloc(1024);
  const Result r = simple(kBlockRequestIn, 2, buf, 1024, true);
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(r.used_len, 1024u + 1);
  EXPECT_EQ(guest_bytes(buf, 1024), pattern(1024, 1024));
}

TEST_F(VirtioBlockTest, ReadScattersAcrossBuffersAndStatusSharesLastBuffer) {
  device();
  // 512 + 511 bytes of data, then a buffer holding the last data byte and the status byte.
  const uint64_t a = alloc(512), b = alloc(511), c = alloc(2);
  const Result r = run({{header(kBlockRequestIn, 5), 16, false}, {a, 512, true}, {b, 511, true}, {c, 2, true}});
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(r.used_len, 1025u);
  std::vector<uint8_t> got = guest_bytes(a, 512);
  const auto rest = guest_bytes(b, 511);
  got.insert(got.end(), rest.begin(), rest.end());
  got.push_back(memory.read_object<uint8_t>(c));
  EXPECT_EQ(got, pattern(5 * 512, 1024));
}

TEST_F(VirtioBlockTest, WriteLandsInFile) {
  device();
  std::vector<uint8_t> bytes(1024);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(0xa0 ^ i);
  const Result r = simple(kBlockRequestOut, 3, data(bytes), 1024, false);
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(r.used_len, 1u);
  EXPECT_EQ(file_bytes(3 * 512, 1024), bytes);
  EXPECT_EQ(file_bytes(2 * 512, 512), pattern(2 * 512, 512));  // neighbours untouched
  EXPECT_EQ(file_bytes(5 * 512, 512), pattern(5 * 512, 512));
}

TEST_F(VirtioBlockTest, FlushSucceeds) {
  device();
  std::vector<uint8_t> bytes(512, 0x5a);
  ASSERT_EQ(simple(kBlockRequestOut, 0, data(bytes), 512).status, kBlockStatusOk);
  const Result r = simple(kBlockRequestFlush, 0);
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(r.used_len, 1u);
  EXPECT_EQ(file_bytes(0, 512), bytes);
}

TEST_F(VirtioBlockTest, GetIdWritesZeroPaddedSerial) {
  device(false, "serial-42");
  const uint64_t buf = alloc(20);
  const Result r = simple(kBlockRequestGetId, 0, buf, 20, true);
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(r.used_len, 21u);
  std::vector<uint8_t> expected(20, 0);
  std::memcpy(expected.data(), "serial-42", 9);
  EXPECT_EQ(guest_bytes(buf, 20), expected);
}

TEST_F(VirtioBlockTest, GetIdOfTwentyBytesIsNotTerminated) {
  device(false, "abcdefghijklmnopqrst");
  const uint64_t buf = alloc(32);
  const Result r = simple(kBlockRequestGetId, 0, buf, 32, true);
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(r.used_len, 21u);
  const auto got = guest_bytes(buf, 21);
  EXPECT_EQ(std::string(got.begin(), got.begin() + 20), "abcdefghijklmnopqrst");
  EXPECT_EQ(got[20], 0xcc);  // nothing written past the id
}

TEST_F(VirtioBlockTest, DiscardedRangeReadsBackZero) {
  device();
  const Result r = segments(kBlockRequestDiscard, {{8, 16, 0}});
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(r.used_len, 1u);
  EXPECT_EQ(file_bytes(8 * 512, 16 * 512), std::vector<uint8_t>(16 * 512, 0));
  EXPECT_EQ(file_bytes(7 * 512, 512), pattern(7 * 512, 512));
  EXPECT_EQ(file_bytes(24 * 512, 512), pattern(24 * 512, 512));
  EXPECT_EQ(std::filesystem::file_size(disk_path), kDiskSize);
  // And through the device.
  const uint64_t buf = alloc(512);
  ASSERT_EQ(simple(kBlockRequestIn, 10, buf, 512, true).status, kBlockStatusOk);
  EXPECT_EQ(guest_bytes(buf, 512), std::vector<uint8_t>(512, 0));
}

TEST_F(VirtioBlockTest, DiscardWithUnmapOrUnknownFlagIsUnsupported) {
  device();
  EXPECT_EQ(segments(kBlockRequestDiscard, {{8, 8, kBlockSegmentFlagUnmap}}).status, kBlockStatusUnsupp);
  EXPECT_EQ(segments(kBlockRequestWriteZeroes, {{8, 8, 2}}).status, kBlockStatusUnsupp);
  EXPECT_EQ(file_bytes(8 * 512, 8 * 512), pattern(8 * 512, 8 * 512));
}

TEST_F(VirtioBlockTest, WriteZeroesWithAndWithoutUnmap) {
  device();
  const Result r = segments(kBlockRequestWriteZeroes, {{1, 3, 0}, {100, 9, kBlockSegmentFlagUnmap}});
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(r.used_len, 1u);
  EXPECT_EQ(file_bytes(512, 3 * 512), std::vector<uint8_t>(3 * 512, 0));
  EXPECT_EQ(file_bytes(100 * 512, 9 * 512), std::vector<uint8_t>(9 * 512, 0));
  EXPECT_EQ(file_bytes(0, 512), pattern(0, 512));
  EXPECT_EQ(file_bytes(4 * 512, 512), pattern(4 * 512, 512));
  EXPECT_EQ(file_bytes(109 * 512, 512), pattern(109 * 512, 512));
  EXPECT_EQ(std::filesystem::file_size(disk_path), kDiskSize);
}

TEST_F(VirtioBlockTest, WriteZeroesUnmapDeallocatesOnlyWhenAsked) {
  device();
  struct stat before {}, middle {}, after {};
  ASSERT_EQ(::stat(disk_path.c_str(), &before), 0);
  // 64 KiB, 4 KiB-aligned, without unmap: zeroes but keeps the blocks allocated.
  ASSERT_EQ(segments(kBlockRequestWriteZeroes, {{256, 128, 0}}).status, kBlockStatusOk);
  ASSERT_EQ(::stat(disk_path.c_str(), &middle), 0);
  EXPECT_GE(middle.st_blocks, before.st_blocks);
  // With unmap: the blocks are freed (a hole), and still read back as zero.
  ASSERT_EQ(segments(kBlockRequestWriteZeroes, {{512, 128, kBlockSegmentFlagUnmap}}).status, kBlockStatusOk);
  ASSERT_EQ(::stat(disk_path.c_str(), &after), 0);
  EXPECT_LE(after.st_blocks, middle.st_blocks - 128);
  EXPECT_EQ(file_bytes(256 * 512, 128 * 512), std::vector<uint8_t>(128 * 512, 0));
  EXPECT_EQ(file_bytes(512 * 512, 128 * 512), std::vector<uint8_t>(128 * 512, 0));
}

TEST_F(VirtioBlockTest, SegmentOutOfRangeChangesNothing) {
  device();
  // The second segment runs past the end: the whole request fails before any I/O.
  const Result r = segments(kBlockRequestWriteZeroes, {{1, 3, 0}, {2047, 2, 0}});
  EXPECT_EQ(r.status, kBlockStatusIoErr);
  EXPECT_EQ(file_bytes(512, 3 * 512), pattern(512, 3 * 512));
}

TEST_F(VirtioBlockTest, ReadOnlyDiskRefusesWrites) {
  ASSERT_EQ(::chmod(disk_path.c_str(), 0444), 0);
  BlockDevice& d = device(true);
  EXPECT_TRUE(d.offered_features() & kBlockFeatureRo);
  EXPECT_FALSE(d.offered_features() & kBlockFeatureDiscard);
  std::vector<uint8_t> bytes(512, 0x11);
  const Result w = simple(kBlockRequestOut, 0, data(bytes), 512);
  EXPECT_EQ(w.status, kBlockStatusIoErr);
  EXPECT_EQ(w.used_len, 1u);
  EXPECT_EQ(segments(kBlockRequestDiscard, {{0, 8, 0}}).status, kBlockStatusIoErr);
  EXPECT_EQ(segments(kBlockRequestWriteZeroes, {{0, 8, 0}}).status, kBlockStatusIoErr);
  EXPECT_EQ(file_bytes(0, 8 * 512), pattern(0, 8 * 512));
  // Reads still work.
  const uint64_t buf = alloc(512);
  EXPECT_EQ(simple(kBlockRequestIn, 1, buf, 512, true).status, kBlockStatusOk);
  EXPECT_EQ(guest_bytes(buf, 512), pattern(512, 512));
}

TEST_F(VirtioBlockTest, OutOfRangeSectorsAreIoErr) {
  BlockDevice& d = device();
  ASSERT_EQ(d.capacity(), kDiskSize / 512);
  const uint64_t buf = alloc(1024);
  EXPECT_EQ(simple(kBlockRequestIn, 2047, buf, 1024, true).status, kBlockStatusIoErr);   // crosses the end
  EXPECT_EQ(simple(kBlockRequestIn, 2048, buf, 512, true).status, kBlockStatusIoErr);    // starts at the end
  EXPECT_EQ(simple(kBlockRequestIn, ~uint64_t{0}, buf, 512, true).status, kBlockStatusIoErr);  // overflow
  EXPECT_EQ(simple(kBlockRequestOut, 2047, buf, 1024, false).status, kBlockStatusIoErr);
  EXPECT_EQ(simple(kBlockRequestIn, 2046, buf, 1024, true).status, kBlockStatusOk);  // the last two
  EXPECT_EQ(guest_bytes(buf, 1024), pattern(2046 * 512, 1024));
  EXPECT_EQ(file_bytes(2047 * 512, 512), pattern(2047 * 512, 512));
}

TEST_F(VirtioBlockTest, HeaderSplitAcrossDescriptors) {
  device();
  const uint64_t h = header(kBlockRequestOut, 6);
  std::vector<uint8_t> bytes(512, 0x77);
  // 5 + 11 header bytes, and the second header buffer also carries the first data bytes.
  const uint64_t second = alloc(11 + 100);
  memory.write(second, guest_bytes(h + 5, 11).data(), 11);
  memory.write(second + 11, bytes.data(), 100);
  const uint64_t rest = data(std::vector<uint8_t>(bytes.begin() + 100, bytes.end()));
  const Result r = run({{h, 5, false}, {second, 111, false}, {rest, 412, false}, {alloc(1), 1, true}});
  EXPECT_EQ(r.status, kBlockStatusOk);
  EXPECT_EQ(file_bytes(6 * 512, 512), bytes);
  EXPECT_EQ(file_bytes(5 * 512, 512), pattern(5 * 512, 512));
}

TEST_F(VirtioBlockTest, MissingStatusFailsRequestAndQueueGoesOn) {
  device();
  std::vector<uint8_t> bytes(512, 0x33);
  // OUT with no writable buffer at all: used with length 0, nothing written to the file.
  const uint16_t bad = submit({{header(kBlockRequestOut, 0), 16, false}, {data(bytes), 512, false}});
  const uint64_t buf = alloc(512), status = alloc(1);
  const uint16_t good = submit({{header(kBlockRequestIn, 1), 16, false}, {buf, 512, true}, {status, 1, true}});
  const auto result = process();
  EXPECT_FALSE(result.queue_error);
  ASSERT_EQ(used_idx(), 2);
  EXPECT_EQ(used_element(0).id, bad);
  EXPECT_EQ(used_element(0).len, 0u);
  EXPECT_EQ(used_element(1).id, good);
  EXPECT_EQ(used_element(1).len, 513u);
  EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
  EXPECT_EQ(file_bytes(0, 512), pattern(0, 512));
}

TEST_F(VirtioBlockTest, ZeroLengthStatusBufferFailsWithUsedLengthZero) {
  device();
  // The Virtqueue refuses zero-length buffers naming the head; the device returns that chain.
  const uint64_t buf = alloc(512);
  const Result r = run({{header(kBlockRequestIn, 0), 16, false}, {buf, 512, true}, {alloc(1), 0, true}});
  EXPECT_EQ(r.used_len, 0u);
  EXPECT_EQ(guest_bytes(buf, 512), std::vector<uint8_t>(512, 0xcc));
}

TEST_F(VirtioBlockTest, ShortHeaderIsIoErrWithUsedLengthZero) {
  device();
  const Result r = run({{header(kBlockRequestIn, 0), 8, false}, {alloc(512), 512, true}, {alloc(1), 1, true}});
  EXPECT_EQ(r.status, kBlockStatusIoErr);
  EXPECT_EQ(r.used_len, 0u);
}

TEST_F(VirtioBlockTest, DataNotMultipleOfSectorIsIoErr) {
  device();
  const uint64_t buf = alloc(600);
  EXPECT_EQ(simple(kBlockRequestIn, 0, buf, 600, true).status, kBlockStatusIoErr);
  EXPECT_EQ(simple(kBlockRequestOut, 0, buf, 600, false).status, kBlockStatusIoErr);
  EXPECT_EQ(file_bytes(0, 1024), pattern(0, 1024));
}

TEST_F(VirtioBlockTest, UnknownTypeIsUnsupported) {
  device();
  const Result r = simple(99, 0);
  EXPECT_EQ(r.status, kBlockStatusUnsupp);
  EXPECT_EQ(r.used_len, 1u);
  EXPECT_EQ(simple(14 /* SECURE_ERASE, not offered */, 0).status, kBlockStatusUnsupp);
}

TEST_F(VirtioBlockTest, BadChainWithHeadIsReturnedAndQueueGoesOn) {
  device();
  // A descriptor pointing outside guest RAM: pop refuses it naming its head.
  const uint16_t bad = submit({{header(kBlockRequestIn, 0), 16, false}, {kMemorySize + 0x1000, 512, true}});
  const uint64_t status = alloc(1);
  const uint16_t good = submit({{header(kBlockRequestFlush, 0), 16, false}, {status, 1, true}});
  const auto result = process();
  EXPECT_FALSE(result.queue_error);
  ASSERT_EQ(used_idx(), 2);
  EXPECT_EQ(used_element(0).id, bad);
  EXPECT_EQ(used_element(0).len, 0u);
  EXPECT_EQ(used_element(1).id, good);
  EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
}

TEST_F(VirtioBlockTest, BrokenQueueIsReported) {
  device();
  // An avail idx more than a queue size ahead: no head to blame, the queue needs a reset.
  memory.write_object<uint16_t>(kAvailRing + 2, kQueueSize + 5);
  const auto result = process();
  ASSERT_TRUE(result.queue_error);
  EXPECT_EQ(used_idx(), 0);
}

// Waits (up to 5 s) until the used ring holds `count` entries; the queue's worker thread
// serves notified queues.
bool wait_used(const std::function<uint16_t()>& used_idx, uint16_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (used_idx() != count) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Interrupts and failures raised from a worker thread.
struct Raised {
  std::mutex mutex;
  std::vector<uint16_t> interrupts;
  std::vector<std::string> failures;
  QueueInterrupt interrupt() {
    return [this](uint16_t index) {
      std::lock_guard lock(mutex);
      interrupts.push_back(index);
    };
  }
  DeviceFailure failure() {
    return [this](const std::string& reason) {
      std::lock_guard lock(mutex);
      failures.push_back(reason);
    };
  }
  size_t failure_count() {
    std::lock_guard lock(mutex);
    return failures.size();
  }
};

TEST_F(VirtioBlockTest, NotifyQueueProcessesAndInterrupts) {
  BlockDevice& d = device(false, "id", 2);
  Raised raised;
  d.set_failure_handler(raised.failure());
  auto q1 = std::make_shared<Virtqueue>(memory, queue.config());
  d.activate(memory, d.offered_features(), {nullptr, q1}, raised.interrupt(), [] {});
  const uint64_t status = alloc(1);
  submit({{header(kBlockRequestFlush, 0), 16, false}, {status, 1, true}});
  d.notify_queue(0);  // not enabled: ignored
  d.notify_queue(1);
  ASSERT_TRUE(wait_used([&] { return used_idx(); }, 1));
  EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
  // The worker raises the interrupt after it has put the request in the used ring.
  auto interrupts = [&] {
    std::lock_guard lock(raised.mutex);
    return raised.interrupts;
  };
  EXPECT_TRUE(eventually([&] { return !interrupts().empty(); }));
  EXPECT_EQ(interrupts(), std::vector<uint16_t>{1});
  // A broken queue is reported to the transport through the failure handler.
  memory.write_object<uint16_t>(kAvailRing + 2, 1 + kQueueSize + 5);
  d.notify_queue(1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (raised.failure_count() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(raised.failure_count(), 1u);
  EXPECT_THAT(raised.failures[0], HasSubstr("queue 1"));
  d.reset();
  EXPECT_NO_THROW(d.notify_queue(1));
}

TEST_F(VirtioBlockTest, WorkerServesManyRequestsInFlightThenFlush) {
  BlockDevice& d = device();
  Raised raised;
  auto q = std::make_shared<Virtqueue>(memory, queue.config());
  d.activate(memory, d.offered_features(), {q}, raised.interrupt(), [] {});
  constexpr int kWrites = 20;  // 3 descriptors each: as many as the 64-entry table holds
  std::vector<uint64_t> statuses;
  for (int i = 0; i < kWrites; ++i) {
    std::vector<uint8_t> bytes(4096, static_cast<uint8_t>(0x40 + i));
    statuses.push_back(alloc(1));
    submit({{header(kBlockRequestOut, 8 * uint64_t(i) * 3), 16, false}, {data(bytes), 4096, false},
            {statuses.back(), 1, true}});
  }
  d.notify_queue(0);
  ASSERT_TRUE(wait_used([&] { return used_idx(); }, kWrites));
  const uint64_t flush_status = alloc(1);
  submit({{header(kBlockRequestFlush, 0), 16, false}, {flush_status, 1, true}});
  d.notify_queue(0);
  ASSERT_TRUE(wait_used([&] { return used_idx(); }, kWrites + 1));
  d.reset();
  EXPECT_EQ(memory.read_object<uint8_t>(flush_status), kBlockStatusOk);
  for (int i = 0; i < kWrites; ++i) {
    EXPECT_EQ(memory.read_object<uint8_t>(statuses[i]), kBlockStatusOk) << "write " << i;
    EXPECT_EQ(file_bytes(4096 * uint64_t(i) * 3, 4096), std::vector<uint8_t>(4096, static_cast<uint8_t>(0x40 + i)));
  }
  // Data next to the written blocks is untouched.
  EXPECT_EQ(file_bytes(4096, 4096), pattern(4096, 4096));
  // The worker counted what it served, each with its latency.
  const auto counted = d.counters().snapshot();
  EXPECT_EQ(counted.writes, static_cast<uint64_t>(kWrites));
  EXPECT_EQ(counted.write_bytes, 4096u * kWrites);
  EXPECT_EQ(counted.flushes, 1u);
  EXPECT_EQ(counted.errors, 0u);
  uint64_t timed = 0;
  for (uint64_t count : counted.latency_buckets) timed += count;
  EXPECT_EQ(timed, static_cast<uint64_t>(kWrites + 1));
  EXPECT_GT(counted.latency_sum_ns, 0u);
}

// KVM signals a queue's ioeventfd when the guest writes its notify address; the worker waits
// on it directly.
TEST_F(VirtioBlockTest, WorkerWakesOnTheQueueNotifier) {
  BlockDevice& d = device();
  ASSERT_TRUE(d.waits_on_notifiers());
  UniqueFd notifier(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  d.set_queue_notifiers({notifier.get()});
  Raised raised;
  auto q = std::make_shared<Virtqueue>(memory, queue.config());
  d.activate(memory, d.offered_features(), {q}, raised.interrupt(), [] {});
  for (uint16_t round = 1; round <= 3; ++round) {
    const uint64_t status = alloc(1);
    submit({{header(kBlockRequestFlush, 0), 16, false}, {status, 1, true}});
    const uint64_t one = 1;
    ASSERT_EQ(::write(notifier.get(), &one, sizeof(one)), 8);
    ASSERT_TRUE(wait_used([&] { return used_idx(); }, round)) << "round " << round;
    EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
  }
  d.reset();
}

TEST_F(VirtioBlockTest, WorkerReadsIntoGuestBuffers) {
  BlockDevice& d = device();
  Raised raised;
  auto q = std::make_shared<Virtqueue>(memory, queue.config());
  d.activate(memory, d.offered_features(), {q}, raised.interrupt(), [] {});
  const uint64_t buffer = alloc(8192);
  const uint64_t status = alloc(1);
  submit({{header(kBlockRequestIn, 16), 16, false}, {buffer, 8192, true}, {status, 1, true}});
  d.notify_queue(0);
  ASSERT_TRUE(wait_used([&] { return used_idx(); }, 1));
  d.reset();
  EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
  EXPECT_EQ(used_element(0).len, 8192u + 1);
  EXPECT_EQ(guest_bytes(buffer, 8192), pattern(16 * 512, 8192));
}

// A restore's device: prepare_activation starts the queue's thread ahead, and activate
// (in a live migration's pause) serves the queue in it instead of starting another.
TEST_F(VirtioBlockTest, PreparedActivationServesInTheThreadStartedAhead) {
  auto threads = [] {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
    return -1;
  };
  BlockDevice& d = device();
  const int before = threads();
  d.prepare_activation();
  EXPECT_EQ(threads(), before + 1);
  Raised raised;
  auto q = std::make_shared<Virtqueue>(memory, queue.config());
  d.activate(memory, d.offered_features(), {q}, raised.interrupt(), [] {});
  EXPECT_EQ(threads(), before + 1) << "activate started a thread of its own";
  const uint64_t buffer = alloc(4096);
  const uint64_t status = alloc(1);
  submit({{header(kBlockRequestIn, 8), 16, false}, {buffer, 4096, true}, {status, 1, true}});
  d.notify_queue(0);
  ASSERT_TRUE(wait_used([&] { return used_idx(); }, 1));
  d.reset();
  EXPECT_EQ(threads(), before);
  EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
  EXPECT_EQ(guest_bytes(buffer, 4096), pattern(8 * 512, 4096));
  // Threads prepared and never used end with the device.
  d.prepare_activation();
  EXPECT_EQ(threads(), before + 1);
}

void VirtioBlockTest::read_128k_at_sector_40() {
  BlockDevice& d = device();
  Raised raised;
  auto q = std::make_shared<Virtqueue>(memory, queue.config());
  d.activate(memory, d.offered_features(), {q}, raised.interrupt(), [] {});
  constexpr uint32_t kBytes = 128 * 1024;
  const uint64_t first = alloc(kBytes);
  const uint64_t second = alloc(4096);
  const uint64_t status = alloc(1);
  submit({{header(kBlockRequestIn, 40), 16, false}, {first, kBytes, true}, {second, 4096, true}, {status, 1, true}});
  d.notify_queue(0);
  ASSERT_TRUE(wait_used([&] { return used_idx(); }, 1));
  d.reset();
  EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
  EXPECT_EQ(used_element(0).len, kBytes + 4096 + 1);
  EXPECT_EQ(guest_bytes(first, kBytes), pattern(40 * 512, kBytes));
  EXPECT_EQ(guest_bytes(second, 4096), pattern(40 * 512 + kBytes, 4096));
}

// A large read, whole from the page cache in the worker's thread, split over two buffers.
TEST_F(VirtioBlockTest, WorkerReadsLargeTransfers) {
  read_128k_at_sector_40();
}

// What the page cache may not hold (dropped where the file system can) goes through io_uring.
TEST_F(VirtioBlockTest, WorkerReadsWhatThePageCacheDropped) {
  ASSERT_NO_FATAL_FAILURE(drop_from_page_cache(0, 0));
  read_128k_at_sector_40();
}

// A read the page cache holds only the first half of: that half is copied at once, the rest
// read through io_uring, into the right place of the guest's buffers.
TEST_F(VirtioBlockTest, WorkerReadsWhatThePageCacheHoldsOnlyPartly) {
  ASSERT_NO_FATAL_FAILURE(drop_from_page_cache(40 * 512 + 64 * 1024, 64 * 1024));
  read_128k_at_sector_40();
}

// The rate limiter holds requests back (without dropping any): 30 requests at 20 per second,
// of which the first 20 pass at once (a full bucket), take at least half a second.
TEST_F(VirtioBlockTest, RateLimitedQueueWaitsForTokens) {
  dev = std::make_unique<BlockDevice>(BlockDiskConfig{disk_path, false, "id", 1, RateLimit{0, 20}, {}});
  Raised raised;
  auto q = std::make_shared<Virtqueue>(memory, queue.config());
  const auto start = std::chrono::steady_clock::now();
  dev->activate(memory, dev->offered_features(), {q}, raised.interrupt(), [] {});
  constexpr int kRequests = 30;  // 2 descriptors each
  for (int i = 0; i < kRequests; ++i) submit({{header(kBlockRequestFlush, 0), 16, false}, {alloc(1), 1, true}});
  dev->notify_queue(0);
  ASSERT_TRUE(wait_used([&] { return used_idx(); }, kRequests));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  dev->reset();
  EXPECT_GE(elapsed, std::chrono::milliseconds(450));
}

TEST_F(VirtioBlockTest, ResetWaitsForRequestsInFlight) {
  BlockDevice& d = device();
  Raised raised;
  auto q = std::make_shared<Virtqueue>(memory, queue.config());
  d.activate(memory, d.offered_features(), {q}, raised.interrupt(), [] {});
  for (int i = 0; i < 10; ++i) {
    std::vector<uint8_t> bytes(4096, 0x5a);
    submit({{header(kBlockRequestOut, 8 * uint64_t(i)), 16, false}, {data(bytes), 4096, false}, {alloc(1), 1, true}});
  }
  d.notify_queue(0);
  // Whatever the worker took is finished when reset returns; nothing is half done.
  d.reset();
  const uint16_t done = used_idx();
  for (uint16_t i = 0; i < done; ++i) EXPECT_EQ(file_bytes(4096 * uint64_t(used_element(i).id / 3), 4096), std::vector<uint8_t>(4096, 0x5a));
}

// Waits (up to 5 s) until `done` holds.
bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// With a poll window, a worker whose requests come soon after it ran dry keeps watching the
// ring with notifications off (NO_NOTIFY), serves what the driver makes available without a
// notification, and turns notifications back on when nothing more comes.
TEST_F(VirtioBlockTest, PollingWorkerServesWithoutNotifications) {
  // No preemption check: this test cannot promise the worker a CPU of its own.
  BlockDiskConfig config{disk_path, false, "id", 1, {}, PollSettings{std::chrono::seconds(1), std::chrono::hours(1)}};
  dev = std::make_unique<BlockDevice>(config);
  Raised raised;
  auto q = std::make_shared<Virtqueue>(memory, queue.config());
  dev->activate(memory, dev->offered_features(), {q}, raised.interrupt(), [] {});
  auto used_flags = [&] { return memory.read_object<uint16_t>(kUsedRing); };
  // Notified requests 100 ms after the worker ran dry: a window that long would have caught
  // them, so it opens (to at least 100 ms).
  for (uint16_t round = 1; round <= 2; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    submit({{header(kBlockRequestFlush, 0), 16, false}, {alloc(1), 1, true}});
    dev->notify_queue(0);
    ASSERT_TRUE(wait_used([&] { return used_idx(); }, round));
  }
  ASSERT_TRUE(wait_until([&] { return used_flags() == kVirtqUsedFlagNoNotify; })) << "the worker does not poll";
  const uint64_t status = alloc(1);
  submit({{header(kBlockRequestFlush, 0), 16, false}, {status, 1, true}});  // no notification
  ASSERT_TRUE(wait_used([&] { return used_idx(); }, 3));
  EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
  // Nothing more: the window ends (within a second) and notifications are back on.
  EXPECT_TRUE(wait_until([&] { return used_flags() == 0; }));
  dev->reset();
  EXPECT_EQ(used_flags(), 0);
}

// --- config space and features -------------------------------------------------------------

TEST_F(VirtioBlockTest, ConfigSpaceLayout) {
  // A size that is not a whole number of sectors is rounded down.
  std::filesystem::resize_file(disk_path, kDiskSize + 100);
  BlockDevice& d = device(false, "x", 4);
  uint8_t bytes[72];
  d.read_config(0, bytes);
  uint64_t capacity;
  std::memcpy(&capacity, bytes, 8);
  EXPECT_EQ(capacity, kDiskSize / 512);
  uint32_t u32;
  std::memcpy(&u32, bytes + 12, 4);
  EXPECT_EQ(u32, BlockDevice::kSegMax);
  std::memcpy(&u32, bytes + 20, 4);
  EXPECT_EQ(u32, 512u);
  uint16_t num_queues;
  std::memcpy(&num_queues, bytes + 34, 2);
  EXPECT_EQ(num_queues, 4);
  std::memcpy(&u32, bytes + 36, 4);
  EXPECT_EQ(u32, BlockDevice::kMaxDiscardSectors);
  std::memcpy(&u32, bytes + 40, 4);
  EXPECT_EQ(u32, BlockDevice::kMaxDiscardSegments);
  std::memcpy(&u32, bytes + 48, 4);
  EXPECT_EQ(u32, BlockDevice::kMaxWriteZeroesSectors);
  EXPECT_EQ(bytes[56], 1);  // write_zeroes_may_unmap
  EXPECT_EQ(d.queue_max_sizes(), std::vector<uint16_t>(4, BlockDevice::kQueueSize));
  // Partial and out-of-range reads.
  uint8_t two[2];
  d.read_config(34, two);
  EXPECT_EQ(two[0], 4);
  uint8_t tail[4] = {1, 2, 3, 4};
  d.read_config(70, tail);
  EXPECT_EQ(tail[2], 0);
  EXPECT_EQ(tail[3], 0);
  uint8_t beyond[4] = {1, 2, 3, 4};
  d.read_config(1000, beyond);
  EXPECT_EQ(beyond[0], 0);
  // Writes are ignored.
  const uint8_t junk[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  d.write_config(0, junk);
  d.read_config(0, bytes);
  std::memcpy(&capacity, bytes, 8);
  EXPECT_EQ(capacity, kDiskSize / 512);
}

TEST_F(VirtioBlockTest, OfferedFeatures) {
  const uint64_t f = device().offered_features();
  for (uint64_t bit : {kFeatureVersion1, kFeatureRingIndirectDesc, kFeatureRingEventIdx, kBlockFeatureSegMax,
                       kBlockFeatureBlkSize, kBlockFeatureFlush, kBlockFeatureMq, kBlockFeatureDiscard,
                       kBlockFeatureWriteZeroes})
    EXPECT_TRUE(f & bit) << std::hex << bit;
  EXPECT_FALSE(f & kBlockFeatureRo);
  EXPECT_EQ(dev->type(), DeviceType::kBlock);
}

// --- opening -------------------------------------------------------------------------------

TEST_F(VirtioBlockTest, MissingFileIsClearError) {
  const std::string missing = dir + "/nope.img";
  try {
    BlockDevice d(BlockDiskConfig{missing, false, "", 1, {}, {}});
    ADD_FAILURE() << "opened a missing file";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), HasSubstr(missing));
    EXPECT_THAT(error.what(), HasSubstr("does not exist"));
  }
}

TEST_F(VirtioBlockTest, ImageOpensWithoutAccessTimeUpdates) {
  // The test owns the image, so O_NOATIME is allowed.
  const int flags = ::fcntl(device().disk().fd(), F_GETFL);
  ASSERT_GE(flags, 0);
  EXPECT_NE(flags & O_NOATIME, 0);
  EXPECT_EQ(flags & O_ACCMODE, O_RDWR);
}

TEST_F(VirtioBlockTest, ReadOnlyFileAskedReadWriteIsClearError) {
  ASSERT_EQ(::chmod(disk_path.c_str(), 0444), 0);
  try {
    BlockDevice d(BlockDiskConfig{disk_path, false, "", 1, {}, {}});
    ADD_FAILURE() << "opened a read-only file read-write";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), HasSubstr(disk_path));
    EXPECT_THAT(error.what(), HasSubstr("read-only"));
  }
  EXPECT_NO_THROW(BlockDevice(BlockDiskConfig{disk_path, true, "", 1, {}, {}}));
}

TEST_F(VirtioBlockTest, DirectoryAndLongIdAreRefused) {
  EXPECT_THROW(BlockDevice(BlockDiskConfig{dir, true, "", 1, {}, {}}), Error);
  try {
    BlockDevice d(BlockDiskConfig{disk_path, false, "123456789012345678901", 1, {}, {}});
    ADD_FAILURE() << "accepted a 21-byte id";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), HasSubstr("20 bytes"));
  }
}

TEST(BlockCountersTest, RequestsBytesErrorsAndLatencyBuckets) {
  BlockCounters counters;
  counters.record(BlockCounters::Kind::kRead, 4096, true, 5'000);         // 5 us
  counters.record(BlockCounters::Kind::kRead, 8192, true, 10'000);        // 10 us: the first bucket's edge
  counters.record(BlockCounters::Kind::kWrite, 512, true, 300'000);       // 300 us
  counters.record(BlockCounters::Kind::kFlush, 0, false, 5'000'000'000);  // 5 s: past every bound
  counters.record(BlockCounters::Kind::kOther, 0, true, 1'000);           // not timed
  const auto snapshot = counters.snapshot();
  EXPECT_EQ(snapshot.reads, 2u);
  EXPECT_EQ(snapshot.writes, 1u);
  EXPECT_EQ(snapshot.flushes, 1u);
  EXPECT_EQ(snapshot.others, 1u);
  EXPECT_EQ(snapshot.read_bytes, 12288u);
  EXPECT_EQ(snapshot.write_bytes, 512u);
  EXPECT_EQ(snapshot.errors, 1u);
  EXPECT_EQ(snapshot.latency_buckets[0], 2u);
  EXPECT_EQ(snapshot.latency_buckets[4], 1u) << "250 < 300 us <= 500";
  EXPECT_EQ(snapshot.latency_buckets[12], 1u);
  EXPECT_EQ(snapshot.latency_sum_ns, 5'000u + 10'000 + 300'000 + 5'000'000'000);
}

}  // namespace

}  // namespace kdom::devices::virtio
