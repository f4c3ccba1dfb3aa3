// libFuzzer target: the snapshot stream reader (snapshot/stream.h) over any bytes, as a
// restore reads a file it cannot trust. Whatever the bytes: no crash or sanitizer report, the
// reader either returns records whose bodies are within the limit or refuses with a
// StreamError, and never reads past an End record.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "snapshot/stream.h"

using kdom::snapshot::RecordType;
using kdom::snapshot::StreamError;
using kdom::snapshot::StreamReader;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::lseek(fd, 0, SEEK_SET);
  try {
    StreamReader reader(fd, "fuzz");
    bool ended = false;
    while (auto record = reader.next()) {
      if (ended || record->body.size() > kdom::snapshot::kMaxRecordBytes) std::abort();
      ended = record->type == RecordType::kEnd;
    }
    if (!ended) std::abort();  // next() ends only after an End record
  } catch (const StreamError&) {
  }
  ::close(fd);
  return 0;
}
