// Whole-file reads.
#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kdom {

std::vector<uint8_t> read_file(const std::string& path, const std::string& what) {
  auto fail = [&](int err) { return Error("cannot read " + what + " '" + path + "': " + std::strerror(err)); };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw fail(errno);
  struct stat info{};
  if (fstat(fd.get(), &info) != 0) throw fail(errno);
  if (S_ISDIR(info.st_mode)) throw fail(EISDIR);
  std::vector<uint8_t> data;
  data.reserve(static_cast<size_t>(info.st_size));
  uint8_t buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail(errno);
    }
    if (n == 0) break;
    data.insert(data.end(), buffer, buffer + n);
  }
  if (data.empty()) throw Error(what + " '" + path + "' is empty");
  return data;
}

}  // namespace kdom
