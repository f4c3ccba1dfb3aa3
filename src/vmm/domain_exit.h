// DomainExit: why a domain stopped, and the process exit status `kdom run` reports for it
// (documented in docs/interfaces.md).
#pragma once

#include <cstdint>
#include <string>

namespace kdom::vmm {

enum class DomainExitKind { kPowerOff, kReboot, kPanic, kDebugExit, kVcpuFailure, kSignal };

struct DomainExit {
  DomainExitKind kind = DomainExitKind::kPowerOff;
  uint32_t code = 0;      // debug-exit byte, or the signal number
  std::string message;    // one line for the log
};

inline int exit_status(const DomainExit& exit) {
  switch (exit.kind) {
    case DomainExitKind::kPowerOff: return 0;
    case DomainExitKind::kReboot: return 2;
    case DomainExitKind::kPanic: return 3;
    case DomainExitKind::kDebugExit: return static_cast<int>(((exit.code & 0xff) << 1) | 1);
    case DomainExitKind::kVcpuFailure: return 1;
    case DomainExitKind::kSignal: return 128 + static_cast<int>(exit.code);
  }
  return 1;
}

}  // namespace kdom::vmm
