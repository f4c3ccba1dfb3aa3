// The PC reset control register at port 0xCF9: writing it with the "reset CPU" bit (2) set
// resets the machine. Linux uses it for reboot=pci (and as a fallback).
#pragma once

#include "devices/bus.h"
#include "devices/guest_event.h"

namespace kdom::devices {

class ResetControl : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0xcf9;
  static constexpr uint64_t kLength = 1;
  static constexpr uint8_t kResetCpu = 1 << 2;

  explicit ResetControl(GuestEventSink events) : events_(std::move(events)) {}

  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0); }
  void write(uint64_t, std::span<const uint8_t> data) override {
    if (!data.empty() && (data[0] & kResetCpu) && events_) events_({GuestEventKind::kReboot});
  }

 private:
  GuestEventSink events_;
};

}  // namespace kdom::devices
