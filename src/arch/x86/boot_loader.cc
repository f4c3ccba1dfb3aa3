// Kernel, initrd and command line placement.
#include "arch/x86/boot_loader.h"

#include <algorithm>

#include "arch/x86/bzimage.h"
#include "arch/x86/e820.h"
#include "arch/x86/elf_image.h"
#include "arch/x86/layout.h"
#include "arch/x86/pvh_start_info.h"
#include "arch/x86/zero_page.h"
#include "base/error.h"

namespace kdom::x86 {

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr uint16_t kCmdlineSizeFieldProtocol = 0x0206;
constexpr uint32_t kOldCmdlineLimit = 255;

std::string mib_text(uint64_t bytes) { return std::to_string((bytes + kMiB - 1) / kMiB) + " MiB"; }

struct Placed {
  uint64_t address = 0;
  uint64_t size = 0;
};

// Places the initrd as high as possible in low RAM (below `limit`), page-aligned, above
// everything the kernel occupies.
Placed place_initrd(const GuestMemory& memory, uint64_t ram_bytes, std::span<const uint8_t> initrd,
                    uint64_t kernel_end, uint64_t limit) {
  uint64_t top = std::min({ram_bytes, kPciHoleStart, limit});
  if (initrd.size() > top || (top - initrd.size()) / kPageSize * kPageSize < kernel_end)
    throw Error("initrd (" + mib_text(initrd.size()) + ") does not fit in guest memory (" + mib_text(ram_bytes) +
                ") beside the kernel");
  uint64_t address = (top - initrd.size()) / kPageSize * kPageSize;
  memory.write(address, initrd.data(), initrd.size());
  return {address, initrd.size()};
}

// `max_length` excludes the terminating NUL (as the boot protocol's cmdline_size does).
uint32_t write_cmdline(const GuestMemory& memory, const std::string& cmdline, uint64_t max_length) {
  uint64_t size = cmdline.size() + 1;
  uint64_t limit = std::min(max_length, kCmdlineMaxSize - 1);
  if (cmdline.size() > limit)
    throw Error("kernel command line is " + std::to_string(cmdline.size()) + " bytes; this kernel accepts at most " +
                std::to_string(limit));
  memory.write(kCmdlineAddress, cmdline.c_str(), size);
  return static_cast<uint32_t>(size);
}

}  // namespace

KernelFormat detect_kernel_format(std::span<const uint8_t> kernel) {
  if (looks_like_elf(kernel)) return find_pvh_entry(kernel) ? KernelFormat::kElfPvh : KernelFormat::kElf64;
  if (looks_like_bzimage(kernel)) return KernelFormat::kBzImage;
  throw Error("kernel is neither an ELF file nor a bzImage");
}

const char* kernel_format_name(KernelFormat format) {
  switch (format) {
    case KernelFormat::kBzImage: return "bzImage (64-bit boot protocol)";
    case KernelFormat::kElfPvh: return "ELF (PVH entry)";
    case KernelFormat::kElf64: return "ELF (64-bit entry)";
  }
  return "?";
}

BootEntry load_boot_images(const GuestMemory& memory, uint64_t ram_bytes, const BootImages& images,
                           uint64_t rsdp_address) {
  KernelFormat format = detect_kernel_format(images.kernel);
  auto e820 = e820_map(ram_bytes);
  BootEntry entry;

  if (format == KernelFormat::kBzImage) {
    BzImage image = parse_bzimage(images.kernel);
    LoadedBzImage loaded = load_bzimage(memory, images.kernel, image);
    uint32_t cmdline_limit = image.header.version >= kCmdlineSizeFieldProtocol ? image.header.cmdline_size
                                                                                : kOldCmdlineLimit;
    ZeroPageInputs inputs;
    inputs.bzimage_header = image.header;
    inputs.bzimage_header->code32_start = static_cast<uint32_t>(loaded.load_address);
    inputs.e820 = e820;
    inputs.cmdline_address = kCmdlineAddress;
    inputs.cmdline_size = write_cmdline(memory, images.cmdline, cmdline_limit);
    inputs.rsdp_address = rsdp_address;
    if (images.initrd) {
      uint64_t limit = image.header.initrd_addr_max ? uint64_t{image.header.initrd_addr_max} + 1 : kPciHoleStart;
      Placed initrd = place_initrd(memory, ram_bytes, *images.initrd, loaded.end_address, limit);
      inputs.initrd_address = initrd.address;
      inputs.initrd_size = initrd.size;
    }
    memory.write_object(kZeroPageAddress, build_zero_page(inputs));
    entry = {BootProtocol::kLinux64, loaded.entry_64, kZeroPageAddress};
    return entry;
  }

  LoadedElf loaded = load_elf(memory, images.kernel);
  if (loaded.lowest_address < kHighMemoryStart)
    throw Error("kernel ELF loads below 1 MiB, where kdom keeps boot structures");
  Placed initrd;
  if (images.initrd) initrd = place_initrd(memory, ram_bytes, *images.initrd, loaded.end_address, kPciHoleStart);
  uint32_t cmdline_size = write_cmdline(memory, images.cmdline, kCmdlineMaxSize - 1);

  if (loaded.pvh_entry) {
    PvhInputs inputs{e820, kCmdlineAddress, initrd.address, initrd.size, rsdp_address};
    entry = {BootProtocol::kPvh, *loaded.pvh_entry, write_pvh_start_info(memory, inputs)};
  } else {
    ZeroPageInputs inputs;
    inputs.e820 = e820;
    inputs.cmdline_address = kCmdlineAddress;
    inputs.cmdline_size = cmdline_size;
    inputs.initrd_address = initrd.address;
    inputs.initrd_size = initrd.size;
    inputs.rsdp_address = rsdp_address;
    memory.write_object(kZeroPageAddress, build_zero_page(inputs));
    entry = {BootProtocol::kLinux64, loaded.entry, kZeroPageAddress};
  }
  return entry;
}

}  // namespace kdom::x86
