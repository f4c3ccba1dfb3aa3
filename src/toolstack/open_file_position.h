// How far a process has read through a file it has open: the offset of its descriptor for
// that file, from /proc/PID/fd and /proc/PID/fdinfo. kdomd follows a restoring VMM this way
// (it reads the snapshot from start to end), without the VMM having to report anything.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace kdom::toolstack {

// The file offset of the first descriptor of process `pid` open on `path` (an absolute,
// normalized path); nullopt when the process is gone, has no such descriptor, or /proc
// cannot be read (another user's process).
std::optional<uint64_t> open_file_position(pid_t pid, const std::string& path);

}  // namespace kdom::toolstack
