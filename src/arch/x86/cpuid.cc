// CPUID filtering.
#include "arch/x86/cpuid.h"

#include <algorithm>
#include <cstring>

namespace kdom::x86 {

namespace {
constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafExtendedTopology = 0xb;
constexpr uint32_t kLeafV2ExtendedTopology = 0x1f;
constexpr uint32_t kLeafKvmSignature = 0x40000000;
constexpr uint32_t kLeafKvmFeatures = 0x40000001;
constexpr uint32_t kLeafAmdExtendedApicId = 0x8000001e;
constexpr uint32_t kHypervisorBit = 1u << 31;  // leaf 1 ECX
constexpr uint32_t kHyperThreadingBit = 1u << 28;  // leaf 1 EDX

uint32_t signature_word(const char* text) {
  uint32_t word;
  std::memcpy(&word, text, 4);
  return word;
}
}  // namespace

std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported, uint32_t vcpu_id,
                                         uint32_t vcpu_count) {
  std::vector<kvm_cpuid_entry2> entries = supported;
  bool has_signature = false;
  for (auto& entry : entries) {
    switch (entry.function) {
      case kLeafFeatures:
        entry.ecx |= kHypervisorBit;
        entry.ebx = (entry.ebx & 0x0000ffff) | (std::min<uint32_t>(vcpu_count, 255) << 16) | (vcpu_id << 24);
        if (vcpu_count > 1)
          entry.edx |= kHyperThreadingBit;
        else
          entry.edx &= ~kHyperThreadingBit;
        break;
      case kLeafExtendedTopology:
      case kLeafV2ExtendedTopology:
        entry.edx = vcpu_id;
        break;
      case kLeafAmdExtendedApicId:
        entry.eax = vcpu_id;
        break;
      case kLeafKvmSignature:
        has_signature = true;
        entry.eax = std::max<uint32_t>(entry.eax, kLeafKvmFeatures);
        entry.ebx = signature_word("KVMK");
        entry.ecx = signature_word("VMKV");
        entry.edx = signature_word("M\0\0\0");
        break;
      default:
        break;
    }
  }
  if (!has_signature) {
    kvm_cpuid_entry2 signature{};
    signature.function = kLeafKvmSignature;
    signature.eax = kLeafKvmFeatures;
    signature.ebx = signature_word("KVMK");
    signature.ecx = signature_word("VMKV");
    signature.edx = signature_word("M\0\0\0");
    entries.push_back(signature);
  }
  return entries;
}

}  // namespace kdom::x86
