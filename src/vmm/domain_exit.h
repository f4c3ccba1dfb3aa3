// DomainExit: why a domain stopped, and the process exit status `kdom run` reports for it
// (documented in docs/interfaces.md), and the exit file (`kdom run --exit-file`) that tells a
// supervisor which it was when the statuses collide (1: bad input or a vCPU failure) or when
// it is not the VMM's parent and never sees the status.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace kdom::vmm {

// kStartFailure: the domain could not be built (bad input, no KVM...); only in exit files.
// kSaved: saved to a file (the control socket's save with "then":"stop"), to be restored.
enum class DomainExitKind { kPowerOff, kReboot, kPanic, kDebugExit, kVcpuFailure, kSignal, kStartFailure, kSaved };

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
    case DomainExitKind::kStartFailure: return 1;
    case DomainExitKind::kSaved: return 0;
  }
  return 1;
}

// The exit file's "reason": poweroff, reboot, crash, debug-exit, vcpu-failure, signal,
// start-failure, saved.
const char* exit_kind_name(DomainExitKind kind);

// {"reason":..,"code":N,"message":"one line","exit_status":N}
nlohmann::json exit_report(const DomainExit& exit);

// Writes exit_report(exit) to `path` atomically (PATH.tmp, fsync, rename), so a reader sees
// either no file or the whole report. Throws Error naming the path.
void write_exit_file(const std::string& path, const DomainExit& exit);

}  // namespace kdom::vmm
