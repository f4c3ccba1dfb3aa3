// boot_params construction.
#include "arch/x86/zero_page.h"

#include "base/error.h"

namespace kdom::x86 {

namespace {
constexpr uint8_t kLoaderTypeUndefined = 0xff;
constexpr uint8_t kCanUseHeap = 0x80;
constexpr uint16_t kHeapEnd = 0xfe00;
constexpr uint16_t kBootFlag = 0xaa55;
constexpr uint32_t kHdrSMagic = 0x53726448;
constexpr uint32_t kDefaultKernelAlignment = 0x01000000;
}  // namespace

boot_params build_zero_page(const ZeroPageInputs& inputs) {
  boot_params params{};
  if (inputs.bzimage_header) {
    params.hdr = *inputs.bzimage_header;
  } else {
    params.hdr.boot_flag = kBootFlag;
    params.hdr.header = kHdrSMagic;
    params.hdr.kernel_alignment = kDefaultKernelAlignment;
  }
  params.hdr.type_of_loader = kLoaderTypeUndefined;
  params.hdr.loadflags |= kCanUseHeap;
  params.hdr.heap_end_ptr = kHeapEnd;
  params.hdr.vid_mode = 0xffff;  // "normal"
  params.hdr.cmd_line_ptr = static_cast<uint32_t>(inputs.cmdline_address);
  params.ext_cmd_line_ptr = static_cast<uint32_t>(inputs.cmdline_address >> 32);
  params.hdr.cmdline_size = inputs.cmdline_size;
  params.hdr.ramdisk_image = static_cast<uint32_t>(inputs.initrd_address);
  params.ext_ramdisk_image = static_cast<uint32_t>(inputs.initrd_address >> 32);
  params.hdr.ramdisk_size = static_cast<uint32_t>(inputs.initrd_size);
  params.ext_ramdisk_size = static_cast<uint32_t>(inputs.initrd_size >> 32);
  params.acpi_rsdp_addr = inputs.rsdp_address;
  if (inputs.e820.size() > E820_MAX_ENTRIES_ZEROPAGE) throw Error("memory map has too many entries");
  for (size_t i = 0; i < inputs.e820.size(); ++i) {
    params.e820_table[i].addr = inputs.e820[i].address;
    params.e820_table[i].size = inputs.e820[i].size;
    params.e820_table[i].type = static_cast<uint32_t>(inputs.e820[i].type);
  }
  params.e820_entries = static_cast<uint8_t>(inputs.e820.size());
  return params;
}

}  // namespace kdom::x86
