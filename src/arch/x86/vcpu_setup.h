// Initial vCPU state: CPUID, MSRs, FPU and local APIC for every vCPU, and the registers of
// the boot vCPU for the chosen boot protocol. Application processors are left waiting for
// the guest's INIT/SIPI, as on real hardware.
#pragma once

#include <cstdint>
#include <vector>

#include "kvm/vcpu.h"
#include "memory/guest_memory.h"

namespace kdom::x86 {

enum class BootProtocol {
  kLinux64,  // 64-bit long mode, RSI = boot_params
  kPvh,      // 32-bit protected mode, paging off, EBX = hvm_start_info
};

struct BootEntry {
  BootProtocol protocol = BootProtocol::kLinux64;
  uint64_t entry = 0;
  uint64_t boot_info_address = 0;
};

void setup_vcpu_common(kvm::Vcpu& vcpu, const std::vector<kvm_cpuid_entry2>& cpuid);
void setup_boot_vcpu(kvm::Vcpu& vcpu, const GuestMemory& memory, const BootEntry& boot);

}  // namespace kdom::x86
