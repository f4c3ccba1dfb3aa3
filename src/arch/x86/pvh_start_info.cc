// hvm_start_info construction.
#include "arch/x86/pvh_start_info.h"

#include "arch/x86/layout.h"
#include "base/error.h"

namespace kdom::x86 {

namespace {
constexpr uint64_t kModlistOffset = 0x40;
constexpr uint64_t kMemmapOffset = 0x80;
constexpr uint64_t kAreaSize = 0x1000;
}  // namespace

uint64_t write_pvh_start_info(const GuestMemory& memory, const PvhInputs& inputs) {
  if (kMemmapOffset + inputs.e820.size() * sizeof(HvmMemmapEntry) > kAreaSize)
    throw Error("memory map has too many entries");
  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = 1;
  info.cmdline_paddr = inputs.cmdline_address;
  info.rsdp_paddr = inputs.rsdp_address;
  info.memmap_paddr = kPvhStartInfoAddress + kMemmapOffset;
  info.memmap_entries = static_cast<uint32_t>(inputs.e820.size());
  if (inputs.initrd_size != 0) {
    info.nr_modules = 1;
    info.modlist_paddr = kPvhStartInfoAddress + kModlistOffset;
    memory.write_object(info.modlist_paddr, HvmModlistEntry{inputs.initrd_address, inputs.initrd_size, 0, 0});
  }
  for (size_t i = 0; i < inputs.e820.size(); ++i) {
    const auto& entry = inputs.e820[i];
    memory.write_object(info.memmap_paddr + i * sizeof(HvmMemmapEntry),
                        HvmMemmapEntry{entry.address, entry.size, static_cast<uint32_t>(entry.type), 0});
  }
  memory.write_object(kPvhStartInfoAddress, info);
  return kPvhStartInfoAddress;
}

}  // namespace kdom::x86
