// Reading a process's descriptor offsets from /proc.
#include "toolstack/open_file_position.h"

#include <filesystem>
#include <fstream>
#include <system_error>

namespace kdom::toolstack {

std::optional<uint64_t> open_file_position(pid_t pid, const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path process = "/proc/" + std::to_string(pid);
  std::error_code error;
  for (fs::directory_iterator it(process / "fd", error), end; !error && it != end; it.increment(error)) {
    std::error_code link_error;
    if (fs::read_symlink(it->path(), link_error) != path || link_error) continue;
    std::ifstream info(process / "fdinfo" / it->path().filename());
    for (std::string key; info >> key;) {
      uint64_t value = 0;
      if (!(info >> value)) break;
      if (key == "pos:") return value;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace kdom::toolstack
