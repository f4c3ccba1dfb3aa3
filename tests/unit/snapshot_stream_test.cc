// Tests of the snapshot stream: every record type round trips through a file, and a stream
// from another version, a truncated one or a corrupted one is refused naming what and where.
#include "snapshot/stream.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace kdom::snapshot {
namespace {

class SnapshotStream : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/kdom-stream-test.XXXXXX";
    dir_ = ::mkdtemp(pattern);
    path_ = dir_ + "/domain.snap";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A stream with one record of every type (bodies of assorted lengths, padding included).
  void write_sample() {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    StreamWriter writer(fd, path_);
    for (const auto& [type, body] : sample()) writer.write(type, body);
    writer.finish();
    ::close(fd);
  }
  static std::vector<std::pair<RecordType, std::vector<uint8_t>>> sample() {
    std::vector<uint8_t> pages(3 * 4096 + 8);
    for (size_t i = 0; i < pages.size(); ++i) pages[i] = static_cast<uint8_t>(i * 7);
    return {{RecordType::kHostFacts, bytes(R"({"kdom":"0.1.0"})")},
            {RecordType::kConfig, bytes(R"({"memory_mib":256})")},
            {RecordType::kMemory, pages},
            {RecordType::kVcpu, bytes("registers")},
            {RecordType::kIrqchip, {}},
            {RecordType::kDevice, bytes("\x04xvdaqueue state")}};
  }
  static std::vector<uint8_t> bytes(const std::string& text) { return {text.begin(), text.end()}; }

  std::vector<uint8_t> file() {
    std::ifstream in(path_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  void rewrite(const std::vector<uint8_t>& content) {
    std::ofstream(path_, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(content.data()),
                                                                    static_cast<std::streamsize>(content.size()));
  }
  // Reads the whole stream; the error's line, or "" when it read to the end.
  std::string read_all(std::vector<Record>* records = nullptr) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "cannot open";
    std::string error;
    try {
      StreamReader reader(fd, "x.snap");
      while (auto record = reader.next())
        if (records) records->push_back(std::move(*record));
    } catch (const StreamError& e) {
      error = e.what();
    }
    ::close(fd);
    return error;
  }

  std::string dir_, path_;
};

TEST_F(SnapshotStream, EveryRecordTypeRoundTrips) {
  write_sample();
  std::vector<Record> records;
  ASSERT_EQ(read_all(&records), "");
  const auto expected = sample();
  ASSERT_EQ(records.size(), expected.size() + 1);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(records[i].type, expected[i].first) << i;
    EXPECT_EQ(records[i].body, expected[i].second) << i;
  }
  EXPECT_EQ(records.back().type, RecordType::kEnd);
  EXPECT_EQ(file().size() % 8, 0u);  // every record padded
}

TEST_F(SnapshotStream, AnotherFormatOrVersionIsRefused) {
  write_sample();
  auto content = file();
  content[0] = 'X';
  rewrite(content);
  EXPECT_EQ(read_all(), "snapshot 'x.snap' is not a kdom snapshot (no KDOMSNAP magic at its start)");
  content[0] = 'K';
  content[8] = 2;
  rewrite(content);
  EXPECT_EQ(read_all(), "snapshot 'x.snap' has format version 2; this kdom reads version 1");
}

TEST_F(SnapshotStream, ATruncatedStreamIsRefusedWherePossible) {
  write_sample();
  const auto whole = file();
  // Cut anywhere (every byte up to the last): never taken for a whole stream.
  for (size_t length = 0; length < whole.size(); length += 7) {
    rewrite({whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(length)});
    const std::string error = read_all();
    EXPECT_NE(error.find("truncated"), std::string::npos) << length << ": " << error;
  }
  rewrite({whole.begin(), whole.end() - 24});  // the end record missing
  EXPECT_EQ(read_all(), "snapshot 'x.snap' is truncated: it ends after 6 records without an end record (byte " +
                            std::to_string(whole.size() - 24) + ")");
}

TEST_F(SnapshotStream, EveryCorruptedByteIsFound) {
  write_sample();
  const auto whole = file();
  // Each byte flipped after the header: the head's or the body's checksum (or the padding's
  // place) catches it; nothing reads as a good stream.
  for (size_t at = 16; at < whole.size(); ++at) {
    auto bad = whole;
    bad[at] ^= 0x40;
    rewrite(bad);
    const std::string error = read_all();
    const bool padding = error.empty();
    if (padding) continue;  // a padding byte: not covered, and harmless
    EXPECT_TRUE(error.find("corrupted") != std::string::npos || error.find("unknown record type") != std::string::npos)
        << at << ": " << error;
    EXPECT_NE(error.find("record "), std::string::npos) << at << ": " << error;
  }
  auto bad = whole;
  bad[16 + 24 + 3] ^= 1;  // in the first record's body
  rewrite(bad);
  EXPECT_EQ(read_all(), "snapshot 'x.snap', record 1 at byte 16: the host-facts record's body is corrupted (checksum)");
}

// A body read in parts where it belongs (next_head, read_body, end_body) is the same as
// next()'s; its checksum is checked at the end; a read past the body, or a next head before
// the body was read whole, is refused.
TEST_F(SnapshotStream, ABodyReadInPartsIsCheckedAtItsEnd) {
  write_sample();
  const auto read_in_parts = [&](std::vector<std::vector<uint8_t>>* bodies) -> std::string {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    std::string error;
    try {
      StreamReader reader(fd, "x.snap");
      while (const auto head = reader.next_head()) {
        std::vector<uint8_t> body(head->length);
        const size_t half = body.size() / 2;
        reader.read_body({body.data(), half});
        reader.read_body({body.data() + half, body.size() - half});
        reader.end_body();
        if (bodies && head->type != RecordType::kEnd) bodies->push_back(body);
      }
    } catch (const StreamError& e) {
      error = e.what();
    }
    ::close(fd);
    return error;
  };
  std::vector<std::vector<uint8_t>> bodies;
  EXPECT_EQ(read_in_parts(&bodies), "");
  const auto expected = sample();
  ASSERT_EQ(bodies.size(), expected.size());
  for (size_t i = 0; i < bodies.size(); ++i) EXPECT_EQ(bodies[i], expected[i].second) << i;

  auto bad = file();
  bad[bad.size() - 24 - 3] ^= 1;  // in the device record's body (the end record's head is the last 24 bytes)
  rewrite(bad);
  EXPECT_NE(read_in_parts(nullptr).find("record 6 at byte"), std::string::npos);
  EXPECT_NE(read_in_parts(nullptr).find("the device record's body is corrupted (checksum)"), std::string::npos);

  write_sample();
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  StreamReader reader(fd, "x.snap");
  const auto head = reader.next_head();
  ASSERT_TRUE(head);
  std::vector<uint8_t> more(head->length + 1);
  EXPECT_THROW(reader.read_body(more), StreamError);
  EXPECT_THROW(reader.next_head(), StreamError);  // its body not read yet
  EXPECT_THROW(reader.end_body(), StreamError);
  ::close(fd);
}

TEST_F(SnapshotStream, TheWriterRefusesWhatTheReaderWould) {
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  StreamWriter writer(fd, path_);
  std::vector<uint8_t> huge(kMaxRecordBytes + 1);
  EXPECT_THROW(writer.write(RecordType::kMemory, huge), StreamError);
  writer.finish();
  EXPECT_THROW(writer.write(RecordType::kConfig, {}), StreamError);
  ::close(fd);
  EXPECT_EQ(read_all(), "");
}

// Small records are gathered and sent together: over a socket, nothing but the header reaches
// the peer before finish(), then the whole stream, readable record by record. A large body
// goes at once, with what was gathered before it.
TEST(SnapshotStreamGathering, SmallRecordsReachThePeerTogetherLargeOnesAtOnce) {
  int ends[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
  const auto waiting = [&] {
    int bytes = 0;
    ::ioctl(ends[1], FIONREAD, &bytes);
    return bytes;
  };
  {
    StreamWriter writer(ends[0], "socket");
    EXPECT_EQ(waiting(), 16);  // the header, sent by the constructor
    const std::vector<uint8_t> small(100, 0x5a);
    for (int i = 0; i < 10; ++i) writer.write(RecordType::kDevice, small);
    EXPECT_EQ(waiting(), 16);
    const std::vector<uint8_t> large(128 * 1024, 0xa5);
    writer.write(RecordType::kMemory, large);
    EXPECT_EQ(waiting(), 16 + 10 * (24 + 104) + 24 + static_cast<int>(large.size()));
    writer.write(RecordType::kDevice, small);
    writer.finish();
  }
  ::shutdown(ends[0], SHUT_WR);
  StreamReader reader(ends[1], "socket");
  int devices = 0, memory = 0;
  while (auto record = reader.next()) {
    if (record->type == RecordType::kDevice) ++devices;
    if (record->type == RecordType::kMemory) ++memory;
  }
  EXPECT_EQ(devices, 11);
  EXPECT_EQ(memory, 1);
  ::close(ends[0]);
  ::close(ends[1]);
}

TEST_F(SnapshotStream, AFullDiskIsASystemError) {
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  try {
    StreamWriter writer(fd, "/dev/full");
    FAIL() << "the header went to a full disk";
  } catch (const SystemError& error) {
    EXPECT_NE(std::string(error.what()).find("cannot write snapshot '/dev/full' at byte 0"), std::string::npos)
        << error.what();
  }
  ::close(fd);
}

TEST(SnapshotRecordTypes, HaveNames) {
  EXPECT_EQ(record_type_name(3), "memory");
  EXPECT_EQ(record_type_name(0xffff), "end");
  EXPECT_EQ(record_type_name(77), "type 77");
}

}  // namespace
}  // namespace kdom::snapshot
