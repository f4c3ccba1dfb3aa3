// The KVM side of a saved domain: each vCPU's registers, FPU/XSAVE, XCRs, debug registers, MSRs
// (KVM's list of those to save: TSC and kvmclock included), local APIC, pending events and MP
// state; the VM's PIC, IOAPIC, PIT and KVM clock. Saved as JSON objects holding KVM's own
// structures (fixed kernel ABI) as hex; on load KVM checks their contents, kdom their sizes.
// Time: a restore moves the guest's TSC and KVM clock on by the wall-clock time since the save,
// so the guest's clock neither goes back nor lags (`date` is right) and its TSC and kvmclock
// agree.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvm/vcpu.h"
#include "kvm/vm.h"

namespace kdom::snapshot {

// With the vCPU stopped (and KVM_RUN re-entered once with immediate_exit after its last exit,
// so an I/O instruction it was in is complete). `xsave_bytes`: the VM's XSAVE size.
nlohmann::json save_vcpu_state(const kvm::Vcpu& vcpu, const std::vector<uint32_t>& msr_indices,
                               size_t xsave_bytes);
// A vCPU's saved state, read and checked (sizes, types), ready for KVM.
struct VcpuState {
  uint32_t id = 0;
  kvm_mp_state mp_state{};
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<uint8_t> xsave;
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  kvm_vcpu_events events{};
  std::vector<std::pair<uint32_t, uint64_t>> msrs;  // the TSC first
  uint32_t tsc_khz = 0;
};
// Throws StateError naming the field when `state` is not one save_vcpu_state gave for vCPU
// `id`. The TSC is moved on by `elapsed_ns` at the saved frequency.
VcpuState parse_vcpu_state(const nlohmann::json& state, uint32_t id, uint64_t elapsed_ns);
// Gives a new vCPU (CPUID already set) the state; throws Error naming the part KVM refused.
void load_vcpu_state(kvm::Vcpu& vcpu, const VcpuState& state);

// The PIC, IOAPIC, PIT and KVM clock, with the host's wall-clock time of the save.
nlohmann::json save_vm_state(const kvm::Vm& vm);
struct VmState {
  kvm_irqchip pic_master{}, pic_slave{}, ioapic{};
  kvm_pit_state2 pit{};
  uint64_t clock_ns = 0;     // moved on by the time since the save
  uint64_t elapsed_ns = 0;   // the wall-clock time since the save (0 if the clock went back)
};
// Throws StateError naming the field; `now_realtime_ns`: this host's CLOCK_REALTIME now.
VmState parse_vm_state(const nlohmann::json& state, uint64_t now_realtime_ns);
uint64_t realtime_now_ns();
void load_vm_state(kvm::Vm& vm, const VmState& state);

}  // namespace kdom::snapshot
