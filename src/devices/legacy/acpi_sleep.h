// The hardware-reduced ACPI sleep control and status registers (two I/O ports). Writing
// SLP_EN with the \_S5 sleep type powers the machine off.
#pragma once

#include "devices/bus.h"
#include "devices/guest_event.h"

namespace kdom::devices {

class AcpiSleep : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0x600;  // +0 sleep control, +1 sleep status
  static constexpr uint64_t kLength = 2;
  static constexpr uint8_t kSleepEnable = 1 << 5;

  AcpiSleep(uint8_t s5_sleep_type, GuestEventSink events) : s5_sleep_type_(s5_sleep_type), events_(std::move(events)) {}

  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0); }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset != 0 || data.empty()) return;
    uint8_t sleep_type = (data[0] >> 2) & 0x7;
    if ((data[0] & kSleepEnable) && sleep_type == s5_sleep_type_ && events_) events_({GuestEventKind::kPowerOff});
  }

 private:
  uint8_t s5_sleep_type_;
  GuestEventSink events_;
};

}  // namespace kdom::devices
