// Tests of load_boot_images: a bzImage gets boot_params (e820, command line, initrd) at the
// zero page; a PVH ELF gets hvm_start_info; a plain ELF gets boot_params and its e_entry;
// bad inputs (initrd too large, command line too long, unknown format) are rejected.
#include "arch/x86/boot_loader.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <asm/bootparam.h>

#include <cstring>
#include <string>
#include <vector>

#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "arch/x86/pvh_start_info.h"
#include "base/error.h"

namespace kdom::x86 {
namespace {

constexpr uint64_t kRam = 64 * kMiB;
constexpr uint64_t kRsdp = 0xE0000;
constexpr uint64_t kPage = 4096;

std::vector<uint8_t> pattern(size_t count, uint8_t seed) {
  std::vector<uint8_t> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = static_cast<uint8_t>(seed + i * 13);
  return out;
}

// A bzImage: 2 setup sectors with a 2.15 setup header, then 16 KiB of "kernel".
struct BzImage {
  setup_header header{};
  size_t kernel_bytes = 0x4000;

  BzImage() {
    header.setup_sects = 2;
    header.boot_flag = 0xaa55;
    header.jump = static_cast<uint16_t>(0xeb | ((0x1f1 + sizeof(setup_header) - 0x202) << 8));
    header.header = 0x53726448;
    header.version = 0x020f;
    header.xloadflags = 1;
    header.loadflags = 1;
    header.init_size = 4 * kMiB;
    header.cmdline_size = 2047;
    header.kernel_alignment = 0x200000;
    header.relocatable_kernel = 1;
    header.initrd_addr_max = 0x7fffffff;
    header.syssize = static_cast<uint32_t>(kernel_bytes / 16);
  }
  std::vector<uint8_t> build() const {
    std::vector<uint8_t> file = pattern(3 * 512 + kernel_bytes, 1);
    std::memcpy(file.data() + 0x1f1, &header, sizeof(header));
    return file;
  }
};

// An ELF kernel with one PT_LOAD segment at `paddr` and, optionally, a PVH entry note.
std::vector<uint8_t> elf_kernel(uint64_t paddr, std::optional<uint32_t> pvh_entry, uint64_t entry = 0x1000100) {
  const auto code = pattern(0x800, 9);
  std::vector<uint8_t> note;
  if (pvh_entry) {
    Elf64_Nhdr nhdr{4, 4, 18};
    note.resize(sizeof(nhdr) + 8);
    std::memcpy(note.data(), &nhdr, sizeof(nhdr));
    std::memcpy(note.data() + sizeof(nhdr), "Xen", 4);
    std::memcpy(note.data() + sizeof(nhdr) + 4, &*pvh_entry, 4);
  }
  const size_t phnum = pvh_entry ? 2 : 1;
  const size_t code_offset = 0x200, note_offset = code_offset + code.size();
  std::vector<uint8_t> file(note_offset + note.size(), 0);

  Elf64_Ehdr ehdr{};
  std::memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
  ehdr.e_ident[EI_CLASS] = ELFCLASS64;
  ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
  ehdr.e_ident[EI_VERSION] = EV_CURRENT;
  ehdr.e_type = ET_EXEC;
  ehdr.e_machine = EM_X86_64;
  ehdr.e_version = EV_CURRENT;
  ehdr.e_entry = entry;
  ehdr.e_phoff = sizeof(Elf64_Ehdr);
  ehdr.e_ehsize = sizeof(Elf64_Ehdr);
  ehdr.e_phentsize = sizeof(Elf64_Phdr);
  ehdr.e_phnum = static_cast<uint16_t>(phnum);
  std::memcpy(file.data(), &ehdr, sizeof(ehdr));

  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  load.p_offset = code_offset;
  load.p_paddr = load.p_vaddr = paddr;
  load.p_filesz = code.size();
  load.p_memsz = 0x10000;  // with bss
  std::memcpy(file.data() + sizeof(ehdr), &load, sizeof(load));
  std::memcpy(file.data() + code_offset, code.data(), code.size());
  if (pvh_entry) {
    Elf64_Phdr notes{};
    notes.p_type = PT_NOTE;
    notes.p_offset = note_offset;
    notes.p_filesz = note.size();
    std::memcpy(file.data() + sizeof(ehdr) + sizeof(Elf64_Phdr), &notes, sizeof(notes));
    std::memcpy(file.data() + note_offset, note.data(), note.size());
  }
  return file;
}

std::string read_string(const GuestMemory& memory, uint64_t address) {
  std::string out;
  for (char c; (c = static_cast<char>(memory.read_object<uint8_t>(address))) != 0; ++address) out.push_back(c);
  return out;
}

class BootLoader : public ::testing::Test {
 protected:
  GuestMemory memory_{ram_ranges(kRam)};
  std::vector<uint8_t> initrd_ = pattern(10000, 77);  // not a page multiple
  std::string cmdline_ = "console=ttyS0 reboot=k panic=-1";

  BootEntry load(const std::vector<uint8_t>& kernel, bool with_initrd = true) {
    BootImages images;
    images.kernel = kernel;
    if (with_initrd) images.initrd = std::span<const uint8_t>(initrd_);
    images.cmdline = cmdline_;
    return load_boot_images(memory_, kRam, images, kRsdp);
  }
  std::string error_of(const std::vector<uint8_t>& kernel, bool with_initrd = true) {
    try {
      load(kernel, with_initrd);
    } catch (const Error& error) {
      return error.what();
    }
    return "(no error)";
  }
  boot_params zero_page() const { return memory_.read_object<boot_params>(kZeroPageAddress); }
  std::vector<uint8_t> bytes_at(uint64_t address, size_t count) const {
    std::vector<uint8_t> out(count);
    memory_.read(address, out.data(), count);
    return out;
  }
};

TEST_F(BootLoader, DetectsKernelFormats) {
  EXPECT_EQ(detect_kernel_format(BzImage().build()), KernelFormat::kBzImage);
  EXPECT_EQ(detect_kernel_format(elf_kernel(0x1000000, 0x1000040)), KernelFormat::kElfPvh);
  EXPECT_EQ(detect_kernel_format(elf_kernel(0x1000000, std::nullopt)), KernelFormat::kElf64);
  EXPECT_STRNE(kernel_format_name(KernelFormat::kBzImage), kernel_format_name(KernelFormat::kElfPvh));
}

TEST_F(BootLoader, BzImageEntersThe64BitEntryWithBootParams) {
  auto entry = load(BzImage().build());
  EXPECT_EQ(entry.protocol, BootProtocol::kLinux64);
  EXPECT_EQ(entry.entry, 0x100200u);
  EXPECT_EQ(entry.boot_info_address, kZeroPageAddress);
  auto params = zero_page();
  EXPECT_EQ(params.hdr.header, 0x53726448u);
  EXPECT_EQ(params.hdr.version, 0x020f);
  EXPECT_EQ(params.hdr.code32_start, 0x100000u);
  EXPECT_EQ(params.hdr.type_of_loader, 0xff);
  EXPECT_EQ(params.acpi_rsdp_addr, kRsdp);
}

TEST_F(BootLoader, BzImageBootParamsHaveTheE820Table) {
  load(BzImage().build());
  auto params = zero_page();
  auto expected = e820_map(kRam);
  ASSERT_EQ(params.e820_entries, expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(params.e820_table[i].addr, expected[i].address) << "entry " << i;
    EXPECT_EQ(params.e820_table[i].size, expected[i].size) << "entry " << i;
    EXPECT_EQ(params.e820_table[i].type, static_cast<uint32_t>(expected[i].type)) << "entry " << i;
  }
  // The last RAM entry ends at the top of guest RAM.
  EXPECT_EQ(params.e820_table[expected.size() - 1].addr + params.e820_table[expected.size() - 1].size, kRam);
}

TEST_F(BootLoader, BzImageCommandLineIsInGuestMemory) {
  load(BzImage().build());
  auto params = zero_page();
  EXPECT_EQ(params.hdr.cmd_line_ptr, kCmdlineAddress);
  EXPECT_EQ(params.ext_cmd_line_ptr, 0u);
  EXPECT_EQ(read_string(memory_, params.hdr.cmd_line_ptr), cmdline_);
}

TEST_F(BootLoader, BzImageKernelIsCopiedToOneMiB) {
  BzImage image;
  auto file = image.build();
  load(file);
  EXPECT_EQ(bytes_at(0x100000, image.kernel_bytes), std::vector<uint8_t>(file.begin() + 3 * 512, file.end()));
}

TEST_F(BootLoader, BzImageInitrdIsPageAlignedAboveTheKernelAndInsideRam) {
  load(BzImage().build());
  auto params = zero_page();
  uint64_t address = params.hdr.ramdisk_image | (uint64_t{params.ext_ramdisk_image} << 32);
  EXPECT_EQ(params.hdr.ramdisk_size, initrd_.size());
  EXPECT_EQ(address % kPage, 0u);
  EXPECT_GE(address, 0x100000u + 4 * kMiB);  // above load address + init_size
  EXPECT_LE(address + initrd_.size(), kRam);
  // As high as possible: within a page of the top of RAM.
  EXPECT_GT(address + initrd_.size(), kRam - kPage);
  EXPECT_EQ(bytes_at(address, initrd_.size()), initrd_);
}

TEST_F(BootLoader, BzImageInitrdRespectsInitrdAddrMax) {
  BzImage image;
  image.header.initrd_addr_max = 32 * kMiB - 1;
  load(image.build());
  auto params = zero_page();
  EXPECT_LE(params.hdr.ramdisk_image + params.hdr.ramdisk_size, 32 * kMiB);
  EXPECT_GE(params.hdr.ramdisk_image, 0x100000u + 4 * kMiB);
  EXPECT_EQ(bytes_at(params.hdr.ramdisk_image, initrd_.size()), initrd_);
}

TEST_F(BootLoader, BzImageWithoutInitrdHasNoRamdisk) {
  load(BzImage().build(), /*with_initrd=*/false);
  auto params = zero_page();
  EXPECT_EQ(params.hdr.ramdisk_image, 0u);
  EXPECT_EQ(params.hdr.ramdisk_size, 0u);
}

TEST_F(BootLoader, InitrdTooLargeDoesNotFit) {
  initrd_ = std::vector<uint8_t>(60 * kMiB, 1);  // 1 MiB + 4 MiB of kernel + 60 MiB > 64 MiB
  auto message = error_of(BzImage().build());
  EXPECT_NE(message.find("does not fit"), std::string::npos) << message;
}

TEST_F(BootLoader, InitrdLargerThanRamDoesNotFit) {
  initrd_ = std::vector<uint8_t>(kRam + kPage, 1);
  auto message = error_of(BzImage().build());
  EXPECT_NE(message.find("does not fit"), std::string::npos) << message;
}

// With a preferred address of 16 MiB the kernel decompresses into [16 MiB, 16 MiB +
// init_size) whatever its load address (boot protocol, init_size; head_64.S). In a 32 MiB
// guest with init_size 12 MiB, a 6 MiB initrd cannot be placed clear of that.
TEST_F(BootLoader, InitrdStaysClearOfTheKernelRuntimeArea) {
  GuestMemory memory(ram_ranges(32 * kMiB));
  BzImage image;
  image.header.pref_address = 0x1000000;
  image.header.init_size = 12 * kMiB;
  auto kernel = image.build();
  std::vector<uint8_t> initrd(6 * kMiB, 3);
  BootImages images{kernel, std::span<const uint8_t>(initrd), cmdline_};
  try {
    load_boot_images(memory, 32 * kMiB, images, kRsdp);
    auto params = memory.read_object<boot_params>(kZeroPageAddress);
    EXPECT_GE(params.hdr.ramdisk_image, 0x1000000u + 12 * kMiB) << "initrd overlaps the kernel's runtime area";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("does not fit"), std::string::npos) << error.what();
  }
}

TEST_F(BootLoader, CommandLineLongerThanCmdlineSizeIsRejected) {
  BzImage image;
  image.header.cmdline_size = 16;
  cmdline_ = std::string(17, 'x');
  auto message = error_of(image.build());
  EXPECT_NE(message.find("command line"), std::string::npos) << message;
}

// cmdline_size is "the maximum size of the command line without the terminating zero": a
// command line of exactly that many characters is allowed.
TEST_F(BootLoader, CommandLineOfExactlyCmdlineSizeCharactersIsAccepted) {
  BzImage image;
  image.header.cmdline_size = 16;
  cmdline_ = std::string(16, 'y');
  EXPECT_NO_THROW(load(image.build()));
  EXPECT_EQ(read_string(memory_, kCmdlineAddress), cmdline_);
}

TEST_F(BootLoader, CommandLineIsCappedByKdomsCmdlineArea) {
  // Even when the kernel accepts more, the command line must fit kdom's area at 0x20000.
  cmdline_ = std::string(kCmdlineMaxSize, 'z');
  BzImage image;
  image.header.cmdline_size = 0x100000;
  auto message = error_of(image.build());
  EXPECT_NE(message.find("command line"), std::string::npos) << message;
}

TEST_F(BootLoader, PvhElfEntersAtTheNoteWithStartInfo) {
  auto entry = load(elf_kernel(0x1000000, 0x1000040));
  EXPECT_EQ(entry.protocol, BootProtocol::kPvh);
  EXPECT_EQ(entry.entry, 0x1000040u);
  EXPECT_EQ(entry.boot_info_address, kPvhStartInfoAddress);

  auto info = memory_.read_object<HvmStartInfo>(entry.boot_info_address);
  EXPECT_EQ(info.magic, 0x336ec578u);
  EXPECT_EQ(info.version, 1u);
  EXPECT_EQ(info.rsdp_paddr, kRsdp);
  EXPECT_EQ(info.cmdline_paddr, kCmdlineAddress);
  EXPECT_EQ(read_string(memory_, info.cmdline_paddr), cmdline_);
}

TEST_F(BootLoader, PvhStartInfoMemmapMatchesE820) {
  auto entry = load(elf_kernel(0x1000000, 0x1000040));
  auto info = memory_.read_object<HvmStartInfo>(entry.boot_info_address);
  auto expected = e820_map(kRam);
  ASSERT_EQ(info.memmap_entries, expected.size());
  EXPECT_GE(info.memmap_paddr, entry.boot_info_address + sizeof(HvmStartInfo));
  for (size_t i = 0; i < expected.size(); ++i) {
    auto m = memory_.read_object<HvmMemmapEntry>(info.memmap_paddr + i * sizeof(HvmMemmapEntry));
    EXPECT_EQ(m.addr, expected[i].address) << "entry " << i;
    EXPECT_EQ(m.size, expected[i].size) << "entry " << i;
    EXPECT_EQ(m.type, static_cast<uint32_t>(expected[i].type)) << "entry " << i;
    EXPECT_EQ(m.reserved, 0u);
  }
}

TEST_F(BootLoader, PvhStartInfoModlistHasTheInitrd) {
  auto entry = load(elf_kernel(0x1000000, 0x1000040));
  auto info = memory_.read_object<HvmStartInfo>(entry.boot_info_address);
  ASSERT_EQ(info.nr_modules, 1u);
  auto module = memory_.read_object<HvmModlistEntry>(info.modlist_paddr);
  EXPECT_EQ(module.size, initrd_.size());
  EXPECT_EQ(module.paddr % kPage, 0u);
  EXPECT_GE(module.paddr, 0x1000000u + 0x10000);  // above the ELF's memsz
  EXPECT_LE(module.paddr + module.size, kRam);
  EXPECT_EQ(bytes_at(module.paddr, initrd_.size()), initrd_);
  // The module list and the memory map do not overlap each other or start_info.
  EXPECT_GE(info.modlist_paddr, entry.boot_info_address + sizeof(HvmStartInfo));
  EXPECT_TRUE(info.modlist_paddr + sizeof(HvmModlistEntry) <= info.memmap_paddr ||
              info.memmap_paddr + info.memmap_entries * sizeof(HvmMemmapEntry) <= info.modlist_paddr);
}

TEST_F(BootLoader, PvhWithoutInitrdHasNoModules) {
  auto entry = load(elf_kernel(0x1000000, 0x1000040), /*with_initrd=*/false);
  auto info = memory_.read_object<HvmStartInfo>(entry.boot_info_address);
  EXPECT_EQ(info.nr_modules, 0u);
}

TEST_F(BootLoader, PvhElfSegmentIsLoaded) {
  auto kernel = elf_kernel(0x1000000, 0x1000040);
  load(kernel);
  EXPECT_EQ(bytes_at(0x1000000, 0x800), std::vector<uint8_t>(kernel.begin() + 0x200, kernel.begin() + 0xa00));
}

TEST_F(BootLoader, ElfWithoutNoteEntersAtEEntryWithBootParams) {
  auto entry = load(elf_kernel(0x1000000, std::nullopt, 0x1000abc));
  EXPECT_EQ(entry.protocol, BootProtocol::kLinux64);
  EXPECT_EQ(entry.entry, 0x1000abcu);
  EXPECT_EQ(entry.boot_info_address, kZeroPageAddress);
  auto params = zero_page();
  EXPECT_EQ(params.hdr.header, 0x53726448u);
  EXPECT_EQ(params.hdr.boot_flag, 0xaa55);
  EXPECT_EQ(params.hdr.cmd_line_ptr, kCmdlineAddress);
  EXPECT_EQ(read_string(memory_, params.hdr.cmd_line_ptr), cmdline_);
  EXPECT_EQ(params.hdr.ramdisk_size, initrd_.size());
  EXPECT_EQ(bytes_at(params.hdr.ramdisk_image, initrd_.size()), initrd_);
  EXPECT_EQ(params.e820_entries, e820_map(kRam).size());
  EXPECT_EQ(params.acpi_rsdp_addr, kRsdp);
}

TEST_F(BootLoader, ElfLoadingBelowOneMiBIsRejected) {
  auto message = error_of(elf_kernel(0x80000, std::nullopt));
  EXPECT_NE(message.find("below 1 MiB"), std::string::npos) << message;
}

TEST_F(BootLoader, ElfInitrdTooLargeDoesNotFit) {
  initrd_ = std::vector<uint8_t>(48 * kMiB, 1);  // the ELF ends at 16 MiB + 64 KiB
  auto message = error_of(elf_kernel(0x1000000, 0x1000040));
  EXPECT_NE(message.find("does not fit"), std::string::npos) << message;
}

TEST_F(BootLoader, NeitherElfNorBzImageIsRejected) {
  std::vector<uint8_t> junk(0x1000, 0x90);
  auto message = error_of(junk);
  EXPECT_NE(message.find("neither an ELF file nor a bzImage"), std::string::npos) << message;
  EXPECT_THROW(detect_kernel_format(std::vector<uint8_t>{}), Error);
}

}  // namespace
}  // namespace kdom::x86
