// libFuzzer target: the virtio modern PCI transport as a hostile driver drives it. The input is a
// sequence of 12-byte operations on a fresh VirtioPci with a real virtio-rng device behind it:
// PCI config space reads and writes (capabilities, MSI-X control, the pci_cfg window), BAR
// reads and writes (common configuration: status, features, queue set-up and enable; ISR;
// device config; notifications, which make the device serve its queue from guest memory;
// MSI-X table and PBA), and stores into guest RAM (to lay out rings and requests). A crash,
// a sanitizer report or an escaping exception is a bug: the transport turns everything a
// driver can do into register values or NEEDS_RESET.
//
//   byte 0     operation, modulo 5: 0 config write, 1 config read, 2 BAR write, 3 BAR read,
//              4 guest RAM store (8 bytes at 8 x offset, within the RAM)
//   bytes 1-2  offset (little-endian; config space: modulo 4096, past its 256 bytes too;
//              BAR: modulo the BAR's size)
//   byte 3     access size: 1, 2, 4 or 8 bytes (bits 0-1; config space at most 4)
//   bytes 4-11 the value written
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "devices/virtio/entropy.h"
#include "devices/virtio/virtio_pci.h"
#include "fuzz_ring.h"

namespace {

using kdom::devices::InterruptLine;
using kdom::devices::pci::MsixInterrupts;
using kdom::devices::pci::MsixMessage;
using kdom::devices::virtio::EntropyDevice;
using kdom::devices::virtio::VirtioPci;

class CountingMsix : public MsixInterrupts {
 public:
  void update(uint16_t, const MsixMessage&) override { ++updates; }
  void fire(uint16_t, const MsixMessage&) override { ++fires; }
  uint64_t updates = 0, fires = 0;
};

class Line : public InterruptLine {
 public:
  void set_level(bool asserted) override { level = asserted; }
  bool level = false;
};

constexpr size_t kOperationBytes = 12;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& memory = kdom::fuzz::fuzz_memory();
  static const std::vector<uint8_t> zeros(kdom::fuzz::kGuestRamBytes);
  memory.write(0, zeros.data(), zeros.size());

  auto device = std::make_shared<EntropyDevice>();
  VirtioPci pci(device, memory, std::make_shared<CountingMsix>(), std::make_shared<Line>());
  for (size_t at = 0; at + kOperationBytes <= size; at += kOperationBytes) {
    const uint8_t* op = data + at;
    const uint32_t offset = uint32_t{op[1]} | uint32_t{op[2]} << 8;
    size_t length = size_t{1} << (op[3] & 3);
    uint8_t value[8];
    std::memcpy(value, op + 4, sizeof(value));
    uint8_t out[8];
    switch (op[0] % 5) {
      case 0:
        pci.write_config(offset % 4096, std::span<const uint8_t>(value, std::min<size_t>(length, 4)));
        break;
      case 1:
        pci.read_config(offset % 4096, std::span<uint8_t>(out, std::min<size_t>(length, 4)));
        break;
      case 2:
        pci.write(offset % pci.bar_size(), std::span<const uint8_t>(value, length));
        break;
      case 3:
        pci.read(offset % pci.bar_size(), std::span<uint8_t>(out, length));
        break;
      default:
        memory.write((uint64_t{offset} * 8) % (kdom::fuzz::kGuestRamBytes - 8), value, sizeof(value));
        break;
    }
  }
  return 0;
}
