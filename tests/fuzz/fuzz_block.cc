// libFuzzer target: virtio-blk request parsing and execution (BlockDevice::process_queue)
// against arbitrary ring contents and requests, over a small scratch disk image created once
// per process. Byte 0 bit 6 picks the read-only or the read-write device. A broken queue is
// reported in QueueResult (or as VirtqueueError); any crash, sanitizer report or other
// exception is a bug.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "devices/virtio/block.h"
#include "fuzz_ring.h"

using kdom::devices::virtio::BlockDevice;
using kdom::devices::virtio::BlockDiskConfig;
using kdom::devices::virtio::Virtqueue;
using kdom::devices::virtio::VirtqueueError;

namespace {

constexpr size_t kDiskBytes = 64 * 1024 + 100;  // 128 sectors and a partial one (rounded off)

struct Disks {
  std::unique_ptr<BlockDevice> read_write;
  std::unique_ptr<BlockDevice> read_only;
};

// A scratch image with known contents (in /dev/shm when there is one, so flushes and writes are
// cheap), opened as `read_only` says. The file is unlinked at once; the device keeps it open.
// Each device gets an image of its own: kdom locks an image it writes against every other user.
std::unique_ptr<BlockDevice> scratch_device(bool read_only, const std::string& id) {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  std::string templ = std::string(dir) + "/kdom-fuzz-disk-XXXXXX";
  std::vector<char> name(templ.begin(), templ.end());
  name.push_back('\0');
  const int fd = mkstemp(name.data());
  if (fd < 0) std::abort();
  std::vector<uint8_t> contents(kDiskBytes);
  for (size_t i = 0; i < contents.size(); ++i) contents[i] = static_cast<uint8_t>(i * 7 + 3);
  if (write(fd, contents.data(), contents.size()) != static_cast<ssize_t>(contents.size())) std::abort();
  close(fd);
  const std::string path = name.data();
  try {
    auto device = std::make_unique<BlockDevice>(BlockDiskConfig{path, read_only, id, 1, {}, {}});
    unlink(path.c_str());
    return device;
  } catch (...) {
    unlink(path.c_str());
    throw;
  }
}

Disks& disks() {
  static Disks* made = [] {
    auto* d = new Disks;
    d->read_write = scratch_device(false, "kdom-fuzz");
    // An id of exactly 20 bytes: GET_ID then returns it without a terminating NUL.
    d->read_only = scratch_device(true, "kdom-fuzz-serial-012");
    return d;
  }();
  return *made;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)disks();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kdom::fuzz::RingSetup setup;
  if (!kdom::fuzz::setup_ring(data, size, setup)) return 0;
  const auto& memory = kdom::fuzz::fuzz_memory();
  const BlockDevice& device = setup.read_only ? *disks().read_only : *disks().read_write;

  Virtqueue queue(memory, setup.config);
  try {
    const BlockDevice::QueueResult result = device.process_queue(memory, queue);
    if (result.interrupt && !result.queue_error) (void)queue.needs_notification();
  } catch (const VirtqueueError&) {
  }
  return 0;
}
