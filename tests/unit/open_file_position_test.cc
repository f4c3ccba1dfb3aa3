// Tests of open_file_position: the offset of a descriptor this process holds on a file, as
// kdomd reads a restoring VMM's, and nothing for a file not open or a process that is gone.
#include "toolstack/open_file_position.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/unique_fd.h"

namespace kdom::toolstack {
namespace {

TEST(OpenFilePosition, IsTheOffsetOfTheDescriptorOnThatFile) {
  const std::string path = std::filesystem::temp_directory_path() / ("kdom-position-" + std::to_string(getpid()));
  std::ofstream(path) << std::string(1000, 'x');
  EXPECT_EQ(open_file_position(getpid(), path), std::nullopt);  // not open yet
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  EXPECT_EQ(open_file_position(getpid(), path), 0u);
  char buffer[300];
  ASSERT_EQ(::read(fd.get(), buffer, sizeof(buffer)), 300);
  EXPECT_EQ(open_file_position(getpid(), path), 300u);
  EXPECT_EQ(open_file_position(getpid(), path + ".other"), std::nullopt);
  fd.reset();
  EXPECT_EQ(open_file_position(getpid(), path), std::nullopt);
  std::filesystem::remove(path);
}

TEST(OpenFilePosition, AProcessThatIsGoneHasNone) {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_EQ(open_file_position(child, "/dev/null"), std::nullopt);
}

}  // namespace
}  // namespace kdom::toolstack
