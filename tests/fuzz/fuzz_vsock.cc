// libFuzzer target: virtio-vsock's packet handling (VsockDevice: parsing, the connection
// state machine, replies on the receive queue) against arbitrary transmit-ring contents. The
// input's ring (fuzz_ring.h) is the transmit queue; a well-formed receive queue of 16 writable
// buffers sits at the top of guest RAM. A host Unix listener at PATH_1 accepts guest
// connections to port 1, so REQUEST, RW, SHUTDOWN and credit packets reach live connections.
// VirtqueueError (a queue the driver broke) is an expected outcome; any crash, sanitizer
// report or other exception is a bug.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "devices/virtio/vsock.h"
#include "fuzz_ring.h"

using kdom::devices::virtio::VirtqDescriptor;
using kdom::devices::virtio::Virtqueue;
using kdom::devices::virtio::VirtqueueConfig;
using kdom::devices::virtio::VirtqueueError;
using kdom::devices::virtio::VsockDevice;
using kdom::devices::virtio::VsockDeviceConfig;

namespace {

constexpr uint64_t kGuestCid = 3;
constexpr uint32_t kRxSize = 16;
constexpr uint64_t kRxDesc = 0xa000, kRxAvail = 0xa100, kRxUsed = 0xa200, kRxData = 0xb000;
constexpr uint32_t kRxBufferBytes = 0x500;  // 16 of them fill 0xb000-0xffff

struct Backend {
  std::string path;
  std::unique_ptr<VsockDevice> device;
  int listener = -1;  // at PATH_1
};

Backend& backend() {
  static Backend* made = [] {
    auto* b = new Backend;
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    b->path = std::string(dir) + "/kdom-fuzz-vsock-" + std::to_string(getpid());
    unlink(b->path.c_str());
    b->device = std::make_unique<VsockDevice>(VsockDeviceConfig{kGuestCid, b->path});
    std::string port1 = b->path + "_1";
    unlink(port1.c_str());
    b->listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, port1.c_str(), sizeof(address.sun_path) - 1);
    if (bind(b->listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || listen(b->listener, 512) != 0)
      std::abort();
    std::atexit([] {
      unlink(backend().path.c_str());
      unlink((backend().path + "_1").c_str());
    });
    return b;
  }();
  return *made;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kdom::fuzz::RingSetup setup;
  if (!kdom::fuzz::setup_ring(data, size, setup)) return 0;
  const auto& memory = kdom::fuzz::fuzz_memory();
  Backend& b = backend();

  // The receive queue: 16 writable buffers, all available.
  for (uint32_t i = 0; i < kRxSize; ++i) {
    memory.write_object(kRxDesc + 16 * i, VirtqDescriptor{kRxData + kRxBufferBytes * i, kRxBufferBytes,
                                                          kdom::devices::virtio::kVirtqDescFlagWrite, 0});
    memory.write_object<uint16_t>(kRxAvail + 4 + 2 * i, static_cast<uint16_t>(i));
  }
  memory.write_object<uint16_t>(kRxAvail, 0);
  memory.write_object<uint16_t>(kRxAvail + 2, kRxSize);
  memory.write_object<uint16_t>(kRxUsed + 2, 0);
  auto rx = std::make_shared<Virtqueue>(memory, VirtqueueConfig{kRxSize, kRxDesc, kRxAvail, kRxUsed, false, false});
  auto tx = std::make_shared<Virtqueue>(memory, setup.config);
  auto event = std::make_shared<Virtqueue>(memory, VirtqueueConfig{kRxSize, kRxDesc, kRxAvail, kRxUsed, false, false});

  VsockDevice& device = *b.device;
  device.activate(memory, device.offered_features(), {rx, tx, event}, [](uint16_t) {}, [] {});
  device.notify_queue(VsockDevice::kTxQueue);
  device.process_backend();  // logs and stops on a broken queue; must not throw
  // Whatever the guest's connections wrote reaches the host side; drain and close it.
  for (int fd; (fd = accept4(b.listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
    char sink[4096];
    while (read(fd, sink, sizeof(sink)) > 0) {
    }
    close(fd);
  }
  device.reset();
  return 0;
}
