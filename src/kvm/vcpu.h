// Vcpu: one virtual CPU: its registers, CPUID, MSRs, local APIC and the shared kvm_run page.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "base/mapping.h"
#include "base/unique_fd.h"
#include "kvm/system.h"
#include "kvm/vm.h"

namespace kdom::kvm {

class Vcpu {
 public:
  Vcpu(const KvmSystem& system, const Vm& vm, uint32_t id);

  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run_state() const { return reinterpret_cast<kvm_run*>(run_mapping_.data()); }

  // Enters the guest. Returns false when interrupted by a signal (EINTR) or by
  // immediate_exit; throws on other errors.
  bool run();
  void set_immediate_exit(bool value) { run_state()->immediate_exit = value ? 1 : 0; }

  kvm_regs regs() const;
  void set_regs(const kvm_regs& regs);
  kvm_sregs sregs() const;
  void set_sregs(const kvm_sregs& sregs);
  void set_fpu(const kvm_fpu& fpu);
  void set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
  void set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs);
  kvm_lapic_state lapic() const;
  void set_lapic(const kvm_lapic_state& state);
  kvm_mp_state mp_state() const;
  void set_mp_state(const kvm_mp_state& state);
  // Pending and injected exceptions, interrupts and NMIs (KVM_GET_VCPU_EVENTS).
  kvm_vcpu_events events() const;
  void set_events(const kvm_vcpu_events& events);

  // For save and restore, with the vCPU stopped (not in KVM_RUN). The XSAVE area (FPU, SSE,
  // AVX...), `bytes` long: 4096, or KVM_CAP_XSAVE2's size where KVM has it.
  std::vector<uint8_t> xsave(size_t bytes) const;
  void set_xsave(const std::vector<uint8_t>& area);
  kvm_xcrs xcrs() const;
  void set_xcrs(const kvm_xcrs& xcrs);
  kvm_debugregs debugregs() const;
  void set_debugregs(const kvm_debugregs& regs);
  // The values of those of `indices` this vCPU has (KVM skips none silently: an MSR it
  // refuses, say of a feature the guest was not given, is left out).
  std::vector<std::pair<uint32_t, uint64_t>> msrs(const std::vector<uint32_t>& indices) const;
  // The guest's TSC frequency in kHz.
  uint32_t tsc_khz() const;
  void set_tsc_khz(uint32_t khz);

 private:
  uint32_t id_;
  UniqueFd fd_;
  Mapping run_mapping_;
};

}  // namespace kdom::kvm
