// Debug-exit port (as QEMU's isa-debug-exit): the guest writes a byte, the VMM exits with
// status (byte << 1) | 1. Probe guests report their result this way.
#pragma once

#include "devices/bus.h"
#include "devices/guest_event.h"

namespace kdom::devices {

class DebugExit : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0xf4;
  static constexpr uint64_t kLength = 4;

  explicit DebugExit(GuestEventSink events) : events_(std::move(events)) {}

  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0xff); }
  void write(uint64_t, std::span<const uint8_t> data) override {
    if (!data.empty() && events_) events_({GuestEventKind::kDebugExit, data[0]});
  }

 private:
  GuestEventSink events_;
};

}  // namespace kdom::devices
