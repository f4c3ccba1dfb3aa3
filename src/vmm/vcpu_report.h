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

// One line naming a failed exit: "triple fault (KVM_EXIT_SHUTDOWN)", etc.
std::string describe_failed_exit(const kvm_run& run);

}  // namespace kdom::vmm
