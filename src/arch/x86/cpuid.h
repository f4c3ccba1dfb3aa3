// The CPUID table a vCPU gets: KVM's supported set, with this vCPU's APIC id and topology
// filled in, the hypervisor bit set, and the KVM signature leaves present (for kvmclock).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace kdom::x86 {

std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported, uint32_t vcpu_id,
                                         uint32_t vcpu_count);

}  // namespace kdom::x86
