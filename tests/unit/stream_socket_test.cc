// Tests of what a live migration asks of its stream's socket: how much is still on its way to
// the peer (nothing once the peer has read it all; no answer for a pipe), and a capped
// receive buffer.
#include "base/stream_socket.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "base/unique_fd.h"

namespace kdom {
namespace {

struct SocketPair {
  SocketPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    writer = UniqueFd(fds[0]);
    reader = UniqueFd(fds[1]);
  }
  UniqueFd writer, reader;
};

TEST(StreamSocketBacklog, CountsWhatThePeerHasNotReadYet) {
  SocketPair pair;
  EXPECT_EQ(bytes_on_their_way(pair.writer.get()), 0u);
  const std::vector<char> data(64 * 1024, 'x');
  ASSERT_EQ(::write(pair.writer.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  const auto queued = bytes_on_their_way(pair.writer.get());
  ASSERT_TRUE(queued);
  EXPECT_GE(*queued, data.size());  // a Unix socket counts its buffers' whole size
  std::vector<char> sink(data.size());
  for (size_t got = 0; got < sink.size();) {
    const ssize_t n = ::read(pair.reader.get(), sink.data() + got, sink.size() - got);
    ASSERT_GT(n, 0);
    got += static_cast<size_t>(n);
  }
  EXPECT_EQ(bytes_on_their_way(pair.writer.get()), 0u);
}

TEST(StreamSocketBacklog, APipeDoesNotSay) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  ASSERT_EQ(::write(write_end.get(), "abc", 3), 3);
  EXPECT_FALSE(bytes_on_their_way(write_end.get()));
  EXPECT_FALSE(cap_receive_buffer(read_end.get(), 256 * 1024));
}

TEST(StreamSocketBacklog, TheReceiveBufferIsCapped) {
  SocketPair pair;
  ASSERT_TRUE(cap_receive_buffer(pair.reader.get(), 64 * 1024));
  int size = 0;
  socklen_t length = sizeof(size);
  ASSERT_EQ(::getsockopt(pair.reader.get(), SOL_SOCKET, SO_RCVBUF, &size, &length), 0);
  EXPECT_EQ(size, 2 * 64 * 1024);  // the kernel doubles it
}

}  // namespace
}  // namespace kdom
