// Tests of SnapshotSource on a stream that is not a file (an incoming live migration): it reads
// the records up to the End record and not one byte after it, waits on a non-blocking fd, says
// which stream broke off, and closes the fd it owns.
#include "snapshot/snapshot_source.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace kdom::snapshot {
namespace {

constexpr char kTrailer[] = "TRAILER: the daemons talk on after the stream";

std::vector<uint8_t> bytes(const std::string& text) { return {text.begin(), text.end()}; }

// A whole stream (host-facts, config, a memory and a device record, End) to `fd`; with
// `end` false it stops before the End record.
void write_stream(int fd, bool end = true) {
  StreamWriter writer(fd, "test");
  writer.write(RecordType::kHostFacts, bytes(R"({"kdom_version":"0.1.0"})"));
  writer.write(RecordType::kConfig, bytes(R"({"vm":{"memory_mib":128},"toolstack":{"name":"web"},)"
                                          R"("pci_slots":{"devices":[{"slot":3,"id":"disk0"}]}})"));
  std::vector<uint8_t> page(8 + 4 + 4 + 4096, 0x5a);
  writer.write(RecordType::kMemory, page);
  writer.write(RecordType::kDevice, bytes(R"({"id":"uart","state":{}})"));
  if (end) writer.finish();
}

void write_text(int fd, const std::string& text) {
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
}

// What can be read from `fd` now, without waiting.
std::string drain(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::string text;
  char buffer[256];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) text.append(buffer, static_cast<size_t>(n));
  return text;
}

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_end = UniqueFd(fds[0]);
    write_end = UniqueFd(fds[1]);
  }
  UniqueFd read_end, write_end;
};

// Reads every record after the config, the End record included; their types.
std::vector<RecordType> read_rest(SnapshotSource& source) {
  std::vector<RecordType> types;
  while (auto record = source.reader().next()) types.push_back(record->type);
  return types;
}

TEST(SnapshotSourceOnAPipe, ReadsUpToTheEndRecordAndLeavesWhatFollows) {
  Pipe pipe;
  write_stream(pipe.write_end.get());
  write_text(pipe.write_end.get(), kTrailer);
  // The source owns a copy; the test keeps the other to see what is left behind.
  UniqueFd kept(::dup(pipe.read_end.get()));
  {
    SnapshotSource source(std::move(pipe.read_end), "the incoming migration (fd 3)");
    EXPECT_EQ(source.name(), "the incoming migration (fd 3)");
    EXPECT_EQ(source.config(), nlohmann::json({{"memory_mib", 128}}));
    EXPECT_EQ(source.toolstack(), nlohmann::json({{"name", "web"}}));
    EXPECT_EQ(source.pci_slots(), nlohmann::json::parse(R"({"devices":[{"slot":3,"id":"disk0"}]})"));
    EXPECT_EQ(read_rest(source), (std::vector<RecordType>{RecordType::kMemory, RecordType::kDevice, RecordType::kEnd}));
    EXPECT_FALSE(source.reader().next());  // and nothing more is read after the end
  }
  EXPECT_EQ(drain(kept.get()), kTrailer);
}

TEST(SnapshotSourceOnAPipe, ClosesItsFdWhenItGoes) {
  Pipe pipe;
  write_stream(pipe.write_end.get());
  const int fd = pipe.read_end.get();
  {
    SnapshotSource source(std::move(pipe.read_end), "the incoming migration");
    read_rest(source);
  }
  errno = 0;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

// A daemon may pass its socket non-blocking: the reader waits for the bytes (here written
// slowly, in small pieces, by another thread) instead of failing with EAGAIN.
TEST(SnapshotSourceOnAPipe, WaitsOnANonBlockingSocket) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
  UniqueFd ours(fds[0]), theirs(fds[1]);
  Pipe staging;  // the whole stream first, then sent on in pieces
  write_stream(staging.write_end.get());
  write_text(staging.write_end.get(), kTrailer);
  staging.write_end.reset();
  std::thread sender([&] {
    char piece[1000];
    for (ssize_t n; (n = ::read(staging.read_end.get(), piece, sizeof(piece))) > 0;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      for (ssize_t done = 0; done < n;) {
        const ssize_t sent = ::send(theirs.get(), piece + done, static_cast<size_t>(n - done), MSG_NOSIGNAL);
        if (sent > 0) done += sent;
      }
    }
  });
  UniqueFd kept(::dup(ours.get()));
  {
    SnapshotSource source(std::move(ours), "the incoming migration");
    EXPECT_EQ(read_rest(source), (std::vector<RecordType>{RecordType::kMemory, RecordType::kDevice, RecordType::kEnd}));
  }
  sender.join();
  EXPECT_EQ(drain(kept.get()), kTrailer);
}

TEST(SnapshotSourceOnAPipe, AStreamThatBreaksOffIsTruncated) {
  Pipe pipe;
  write_stream(pipe.write_end.get(), /*end=*/false);
  pipe.write_end.reset();  // the sender went away
  SnapshotSource source(std::move(pipe.read_end), "the incoming migration (fd 3)");
  try {
    read_rest(source);
    ADD_FAILURE() << "a stream without its end record was read whole";
  } catch (const StreamError& error) {
    EXPECT_NE(std::string(error.what())
                  .find("snapshot 'the incoming migration (fd 3)' is truncated: it ends after 4 records without an "
                        "end record"),
              std::string::npos)
        << error.what();
  }
}

// A stream from before the config record kept the PCI slots: none, and the restore takes them
// from the pci record at the end.
TEST(SnapshotSourceOnAPipe, AnOlderConfigRecordHasNoPciSlots) {
  Pipe pipe;
  {
    StreamWriter writer(pipe.write_end.get(), "test");
    writer.write(RecordType::kHostFacts, bytes(R"({"kdom_version":"0.1.0"})"));
    writer.write(RecordType::kConfig, bytes(R"({"vm":{"memory_mib":128},"toolstack":null})"));
    writer.finish();
  }
  SnapshotSource source(std::move(pipe.read_end), "an older save");
  EXPECT_TRUE(source.pci_slots().is_null());
  EXPECT_EQ(read_rest(source), (std::vector<RecordType>{RecordType::kEnd}));
}

TEST(SnapshotSourceOnAPipe, AStreamThatIsNotASnapshotIsRefusedAtOnce) {
  Pipe pipe;
  write_text(pipe.write_end.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  pipe.write_end.reset();
  try {
    SnapshotSource source(std::move(pipe.read_end), "the incoming migration");
    ADD_FAILURE() << "an HTTP request was taken for a snapshot";
  } catch (const StreamError& error) {
    EXPECT_NE(std::string(error.what()).find("'the incoming migration' is not a kdom snapshot"), std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace kdom::snapshot
