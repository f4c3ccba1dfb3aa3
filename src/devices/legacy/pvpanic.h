// pvpanic (ISA variant, ACPI id QEMU0001): the guest kernel writes bit 0 when it panics and
// bit 1 when a crash kernel is loaded. Reading returns the events supported.
#pragma once

#include "devices/bus.h"
#include "devices/guest_event.h"

namespace kdom::devices {

class PvPanic : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0x505;
  static constexpr uint64_t kLength = 1;
  static constexpr uint8_t kPanicked = 1 << 0;
  static constexpr uint8_t kCrashLoaded = 1 << 1;

  explicit PvPanic(GuestEventSink events) : events_(std::move(events)) {}

  void read(uint64_t, std::span<uint8_t> data) override {
    std::fill(data.begin(), data.end(), kPanicked | kCrashLoaded);
  }
  void write(uint64_t, std::span<const uint8_t> data) override {
    if (!data.empty() && (data[0] & kPanicked) && events_) events_({GuestEventKind::kPanic});
  }

 private:
  GuestEventSink events_;
};

}  // namespace kdom::devices
