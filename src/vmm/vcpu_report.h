// Human-readable reports of a vCPU's state, printed when a vCPU fails.
#pragma once

#include <linux/kvm.h>

#include <string>
#include <vector>

namespace kdom::vmm {

// A few lines describing the general, control and segment registers.
std::vector<std::string> describe_registers(const kvm_regs& regs, const kvm_sregs& sregs);

// One line on the exception, interrupt and NMI the vCPU was delivering or had pending: what
// a triple fault was in the middle of.
std::string describe_events(const kvm_vcpu_events& events);

// Whether the registers are the x86 reset state (CS:IP f000:fff0 with base ffff0000): what
// KVM leaves on AMD SVM after a triple fault, since the hardware saves no state then.
bool registers_are_reset_state(const kvm_regs& regs, const kvm_sregs& sregs);

// One line naming a failed exit: "triple fault (KVM_EXIT_SHUTDOWN)", etc.
std::string describe_failed_exit(const kvm_run& run);

}  // namespace kdom::vmm
