// KVM ABI pieces that <linux/kvm.h> gets wrong in C++: its variable-length structs use
// __DECLARE_FLEX_ARRAY, which in C++ adds an empty member, moving the array and changing
// sizeof (and so the ioctl numbers that encode it). These are the C layouts the kernel uses.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace kdom::kvm::abi {

// Header of kvm_cpuid2 and kvm_msrs: a count and padding, then the entries at offset 8.
struct ListHeader {
  uint32_t count;
  uint32_t padding;
};
static_assert(sizeof(ListHeader) == 8);

constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, sizeof(ListHeader));
constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, sizeof(ListHeader));
constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, sizeof(ListHeader));
constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, sizeof(ListHeader));
// kvm_msr_list: a count, then the indices at offset 4.
constexpr unsigned long kGetMsrIndexList = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, sizeof(uint32_t));
// kvm_xsave: 4 KiB in the ioctl number; KVM_GET_XSAVE2 may write more (KVM_CAP_XSAVE2's size).
inline constexpr size_t kXsaveLegacyBytes = 4096;
constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, kXsaveLegacyBytes);
constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, kXsaveLegacyBytes);
constexpr unsigned long kGetXsave2 = _IOC(_IOC_READ, KVMIO, 0xcf, kXsaveLegacyBytes);
// kvm_irq_routing: count, flags, then kvm_irq_routing_entry[] at offset 8.
constexpr unsigned long kSetGsiRouting = _IOC(_IOC_WRITE, KVMIO, 0x6a, sizeof(ListHeader));

}  // namespace kdom::kvm::abi
