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
// Loads a state save_vcpu_state gave into a new vCPU (CPUID already set), moving its TSC on by
// `elapsed_ns` of the saved TSC frequency. Throws StateError for a malformed state, SystemError
// when KVM refuses a part (naming it).
void load_vcpu_state(kvm::Vcpu& vcpu, const nlohmann::json& state, uint64_t elapsed_ns);

// The PIC, IOAPIC, PIT and KVM clock, with the host's wall-clock time of the save.
nlohmann::json save_vm_state(const kvm::Vm& vm);
// The wall-clock nanoseconds since the saved state was taken (0 if the clock went back).
uint64_t elapsed_since_save(const nlohmann::json& vm_state);
// Loads the PIC, IOAPIC and PIT, and sets the KVM clock to the saved one plus `elapsed_ns`.
void load_vm_state(kvm::Vm& vm, const nlohmann::json& state, uint64_t elapsed_ns);

}  // namespace kdom::snapshot
