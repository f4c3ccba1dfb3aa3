// The CMOS real-time clock (MC146818) at ports 0x70/0x71: time of day from the host clock
// (UTC), in BCD or binary and 12- or 24-hour form as status register B asks, plus the 128
// bytes of CMOS RAM. The guest cannot set the host's clock: the time it sets is kept as an
// offset from the host clock. While the guest holds status B's SET bit, the time registers
// hold what it writes (the clock is frozen) and the new time takes effect when SET clears.
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "devices/bus.h"

namespace kdom::devices {

class CmosRtc : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0x70;
  static constexpr uint64_t kLength = 2;
  static constexpr uint8_t kCenturyIndex = 0x32;
  using Clock = std::function<time_t()>;

  explicit CmosRtc(Clock clock = [] { return std::time(nullptr); });

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Save and restore: {"index", "ram" (hex, the 128 bytes), "offset_seconds" (the guest's time
  // less the host clock, signed), "frozen" (bool) with "frozen_time" ({second, minute, hour,
  // weekday, day, month, year}: the time registers while SET is held)}. The time goes on
  // coming from the host clock: a restored guest reads the host's time plus its offset.
  // load_state checks every field first (snapshot::StateError naming it, the RTC unchanged).
  nlohmann::json save_state() const;
  void load_state(const nlohmann::json& state);

 private:
  uint8_t read_register(uint8_t index);
  tm current_time() const;
  void set_time_field(tm& time, uint8_t index, uint8_t value) const;
  void commit_time(tm time);
  void write_register(uint8_t index, uint8_t value);
  uint8_t encode(int value) const;
  int decode(uint8_t value) const;

  mutable std::mutex mutex_;
  Clock clock_;
  uint8_t index_ = 0;
  std::array<uint8_t, 128> ram_{};
  time_t offset_seconds_ = 0;  // guest-set time minus host time
  std::optional<tm> frozen_;   // the time registers while SET is held
};

}  // namespace kdom::devices
