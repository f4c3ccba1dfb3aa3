// Boot-timer port (like Firecracker's boot timer): a guest write logs how long after the VMM
// process started the guest got there, e.g. when its init begins.
#pragma once

#include <functional>

#include "devices/bus.h"

namespace kdom::devices {

class BootTimer : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0x440;
  static constexpr uint64_t kLength = 1;
  using Reporter = std::function<void(uint8_t value)>;

  explicit BootTimer(Reporter reporter) : reporter_(std::move(reporter)) {}

  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0); }
  void write(uint64_t, std::span<const uint8_t> data) override {
    if (!data.empty() && reporter_) reporter_(data[0]);
  }

 private:
  Reporter reporter_;
};

}  // namespace kdom::devices
