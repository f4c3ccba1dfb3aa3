// GuestEvent: what a device reports when the guest asks the machine to stop: power off,
// reset, panic, or an exit code on the debug-exit port.
#pragma once

#include <cstdint>
#include <functional>

namespace kdom::devices {

enum class GuestEventKind { kPowerOff, kReboot, kPanic, kDebugExit };

struct GuestEvent {
  GuestEventKind kind;
  uint32_t code = 0;  // the byte written to the debug-exit port
};

using GuestEventSink = std::function<void(const GuestEvent&)>;

}  // namespace kdom::devices
