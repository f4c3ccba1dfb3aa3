// The CPU features a guest was shown, by name, and whether a host can show them again: a
// domain restored (or migrated) onto a host whose KVM lacks a feature the guest saw at boot
// must be refused before it runs, naming the feature, rather than crash when the guest uses
// it. Features are the CPUID bits Linux and other guests act on (leaves 1, 7.0 and
// 0x80000001, and XSAVE's 0xD.1); bits that describe this vCPU rather than the CPU (APIC ids,
// topology, the hypervisor bit, OSXSAVE, which the OS sets) are not compared.
#pragma once

#include <linux/kvm.h>

#include <string>
#include <vector>

namespace kdom::x86 {

// The features set in `guest` that `host` (KVM's supported CPUID) does not have, by name
// ("avx512f", "leaf 7.0 ebx bit 22" for a bit without a name here), in leaf order.
std::vector<std::string> missing_cpu_features(const std::vector<kvm_cpuid_entry2>& guest,
                                              const std::vector<kvm_cpuid_entry2>& host);

}  // namespace kdom::x86
