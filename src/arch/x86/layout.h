// Where kdom puts things in an x86 guest's physical address space.
#pragma once

#include <cstdint>

namespace kdom::x86 {

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kGiB = 1024 * kMiB;

// Low memory, below 1 MiB.
constexpr uint64_t kGdtAddress = 0x500;
constexpr uint64_t kPvhStartInfoAddress = 0x6000;  // hvm_start_info, then its memmap
constexpr uint64_t kZeroPageAddress = 0x7000;      // Linux boot_params
constexpr uint64_t kPml4Address = 0x9000;          // identity-mapped page tables: PML4,
constexpr uint64_t kPdptAddress = 0xA000;          // one PDPT,
constexpr uint64_t kPdAddress = 0xB000;            // and four PDs (4 GiB of 2 MiB pages)
constexpr uint64_t kIdentityMappedBytes = 4 * kGiB;
constexpr uint64_t kCmdlineAddress = 0x20000;
constexpr uint64_t kCmdlineMaxSize = 0x10000;
constexpr uint64_t kEbdaStart = 0x9FC00;
constexpr uint64_t kLowRamEnd = 0xA0000;  // 640 KiB
constexpr uint64_t kBiosStart = 0xE0000;  // ACPI tables live here, where Linux scans for the RSDP
constexpr uint64_t kAcpiTablesAddress = 0xE0000;
constexpr uint64_t kAcpiTablesMaxSize = 0x10000;
constexpr uint64_t kHighMemoryStart = 1 * kMiB;  // the kernel is loaded here

// The 32-bit PCI hole: RAM beyond 3 GiB continues at 4 GiB.
constexpr uint64_t kPciHoleStart = 3 * kGiB;
constexpr uint64_t kFourGiB = 4 * kGiB;

constexpr uint64_t kIoApicAddress = 0xFEC00000;
constexpr uint64_t kLocalApicAddress = 0xFEE00000;

// KVM needs three pages for the TSS and one for the identity map, out of guest RAM's way.
constexpr uint64_t kKvmTssAddress = 0xFFFBD000;
constexpr uint64_t kKvmIdentityMapAddress = 0xFFFBC000;

}  // namespace kdom::x86
