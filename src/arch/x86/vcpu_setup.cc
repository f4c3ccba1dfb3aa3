// vCPU register and state initialisation.
#include "arch/x86/vcpu_setup.h"

#include <cstring>

#include "arch/x86/gdt.h"
#include "arch/x86/page_tables.h"

namespace kdom::x86 {

namespace {
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint64_t kMiscEnableFastStrings = 1;
constexpr uint64_t kCr0ProtectedMode = 1ULL << 0;
constexpr uint64_t kCr0ExtensionType = 1ULL << 4;
constexpr uint64_t kCr0Paging = 1ULL << 31;
constexpr uint64_t kCr4Pae = 1ULL << 5;
constexpr uint64_t kEferLme = 1ULL << 8;
constexpr uint64_t kEferLma = 1ULL << 10;
constexpr uint64_t kRflagsReserved = 1ULL << 1;
constexpr size_t kApicLvt0 = 0x350;
constexpr size_t kApicLvt1 = 0x360;
constexpr uint32_t kDeliveryModeExtInt = 7;
constexpr uint32_t kDeliveryModeNmi = 4;

uint32_t apic_register(const kvm_lapic_state& state, size_t offset) {
  uint32_t value;
  std::memcpy(&value, state.regs + offset, 4);
  return value;
}

void set_apic_register(kvm_lapic_state& state, size_t offset, uint32_t value) {
  std::memcpy(state.regs + offset, &value, 4);
}

uint32_t with_delivery_mode(uint32_t lvt, uint32_t mode) { return (lvt & ~0x700u) | (mode << 8); }
}  // namespace

void setup_vcpu_common(kvm::Vcpu& vcpu, const std::vector<kvm_cpuid_entry2>& cpuid) {
  vcpu.set_cpuid(cpuid);
  vcpu.set_msrs({{kMsrMiscEnable, kMiscEnableFastStrings}});
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  vcpu.set_fpu(fpu);
  // LINT0 delivers the legacy PIC's interrupts (ExtINT), LINT1 NMIs, as firmware would set them.
  kvm_lapic_state lapic = vcpu.lapic();
  set_apic_register(lapic, kApicLvt0, with_delivery_mode(apic_register(lapic, kApicLvt0), kDeliveryModeExtInt));
  set_apic_register(lapic, kApicLvt1, with_delivery_mode(apic_register(lapic, kApicLvt1), kDeliveryModeNmi));
  vcpu.set_lapic(lapic);
}

void setup_boot_vcpu(kvm::Vcpu& vcpu, const GuestMemory& memory, const BootEntry& boot) {
  BootSegments segments = write_boot_gdt(memory);
  kvm_sregs sregs = vcpu.sregs();
  sregs.gdt = segments.gdt;
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  sregs.tr = segments.tss;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segments.data;
  kvm_regs regs{};
  regs.rflags = kRflagsReserved;
  regs.rip = boot.entry;
  if (boot.protocol == BootProtocol::kLinux64) {
    sregs.cs = segments.code64;
    sregs.cr3 = write_identity_page_tables(memory);
    sregs.cr4 |= kCr4Pae;
    sregs.cr0 |= kCr0ProtectedMode | kCr0ExtensionType | kCr0Paging;
    sregs.efer |= kEferLme | kEferLma;
    regs.rsi = boot.boot_info_address;
  } else {
    sregs.cs = segments.code32;
    sregs.cr0 = (sregs.cr0 | kCr0ProtectedMode | kCr0ExtensionType) & ~kCr0Paging;
    sregs.cr4 = 0;
    sregs.efer = 0;
    regs.rbx = boot.boot_info_address;
  }
  vcpu.set_sregs(sregs);
  vcpu.set_regs(regs);
}

}  // namespace kdom::x86
