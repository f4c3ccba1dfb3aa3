// Puts a kernel, its initrd and command line into guest memory and says how to enter it:
// bzImage through the 64-bit Linux boot protocol, ELF through its PVH entry when it has one,
// otherwise at its 64-bit entry point.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "arch/x86/vcpu_setup.h"
#include "memory/guest_memory.h"

namespace kdom::x86 {

struct BootImages {
  std::span<const uint8_t> kernel;
  std::optional<std::span<const uint8_t>> initrd;
  std::string cmdline;
};

enum class KernelFormat { kBzImage, kElfPvh, kElf64 };

// Identifies the format; throws Error ("neither an ELF file nor a bzImage") otherwise.
KernelFormat detect_kernel_format(std::span<const uint8_t> kernel);
const char* kernel_format_name(KernelFormat format);

// Throws Error naming the problem (malformed kernel, too little memory, initrd too large,
// command line too long).
BootEntry load_boot_images(const GuestMemory& memory, uint64_t ram_bytes, const BootImages& images,
                           uint64_t rsdp_address);

}  // namespace kdom::x86
