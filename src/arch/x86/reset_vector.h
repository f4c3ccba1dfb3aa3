// A stand-in for firmware at the x86 reset vector (0xFFFF0): kdom loads no BIOS, but a guest
// that reboots by jumping there (Linux's reboot=bios, the last resort of its reboot loop)
// must still reach a reset. The stub pulses the i8042 reset line and halts.
#pragma once

#include "memory/guest_memory.h"

namespace kdom::x86 {

constexpr uint64_t kResetVectorAddress = 0xffff0;

void write_reset_vector_stub(const GuestMemory& memory);

}  // namespace kdom::x86
