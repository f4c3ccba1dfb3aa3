// Tests of build_zero_page: the boot_params fields kdom fills for the 64-bit Linux boot
// protocol (loader type, heap, command line, initrd, RSDP, e820), including the ext_* high
// halves of addresses above 4 GiB.
#include "arch/x86/zero_page.h"

#include <gtest/gtest.h>

#include "arch/x86/layout.h"
#include "base/error.h"

namespace kdom::x86 {
namespace {

constexpr uint8_t kCanUseHeap = 0x80;
constexpr uint8_t kLoadedHigh = 0x01;

ZeroPageInputs basic_inputs() {
  ZeroPageInputs inputs;
  inputs.e820 = e820_map(256 * kMiB);
  inputs.cmdline_address = kCmdlineAddress;
  inputs.cmdline_size = 20;
  inputs.initrd_address = 0x0f000000;
  inputs.initrd_size = 0x123456;
  inputs.rsdp_address = 0xE0000;
  return inputs;
}

TEST(ZeroPage, LoaderFieldsForAnElfKernel) {
  auto params = build_zero_page(basic_inputs());
  EXPECT_EQ(params.hdr.type_of_loader, 0xff);
  EXPECT_TRUE(params.hdr.loadflags & kCanUseHeap);
  EXPECT_EQ(params.hdr.heap_end_ptr, 0xfe00);
  EXPECT_EQ(params.hdr.vid_mode, 0xffff);
  // Without a bzImage header, kdom supplies the signature fields itself.
  EXPECT_EQ(params.hdr.boot_flag, 0xaa55);
  EXPECT_EQ(params.hdr.header, 0x53726448u);
  EXPECT_NE(params.hdr.kernel_alignment, 0u);
}

TEST(ZeroPage, CommandLineInitrdAndRsdp) {
  auto params = build_zero_page(basic_inputs());
  EXPECT_EQ(params.hdr.cmd_line_ptr, kCmdlineAddress);
  EXPECT_EQ(params.ext_cmd_line_ptr, 0u);
  EXPECT_EQ(params.hdr.cmdline_size, 20u);
  EXPECT_EQ(params.hdr.ramdisk_image, 0x0f000000u);
  EXPECT_EQ(params.ext_ramdisk_image, 0u);
  EXPECT_EQ(params.hdr.ramdisk_size, 0x123456u);
  EXPECT_EQ(params.ext_ramdisk_size, 0u);
  EXPECT_EQ(params.acpi_rsdp_addr, 0xE0000u);
}

TEST(ZeroPage, AddressesAboveFourGiBUseTheExtFields) {
  auto inputs = basic_inputs();
  inputs.cmdline_address = 0x123456000ULL;
  inputs.initrd_address = 0x2fedcb000ULL;
  inputs.initrd_size = 0x100001000ULL;
  auto params = build_zero_page(inputs);
  EXPECT_EQ(params.hdr.cmd_line_ptr, 0x23456000u);
  EXPECT_EQ(params.ext_cmd_line_ptr, 0x1u);
  EXPECT_EQ(params.hdr.ramdisk_image, 0xfedcb000u);
  EXPECT_EQ(params.ext_ramdisk_image, 0x2u);
  EXPECT_EQ(params.hdr.ramdisk_size, 0x1000u);
  EXPECT_EQ(params.ext_ramdisk_size, 0x1u);
}

TEST(ZeroPage, E820TableIsCopied) {
  auto inputs = basic_inputs();
  inputs.e820 = e820_map(6 * kGiB);
  auto params = build_zero_page(inputs);
  ASSERT_EQ(params.e820_entries, inputs.e820.size());
  for (size_t i = 0; i < inputs.e820.size(); ++i) {
    EXPECT_EQ(params.e820_table[i].addr, inputs.e820[i].address);
    EXPECT_EQ(params.e820_table[i].size, inputs.e820[i].size);
    EXPECT_EQ(params.e820_table[i].type, static_cast<uint32_t>(inputs.e820[i].type));
  }
  EXPECT_EQ(params.e820_table[inputs.e820.size()].size, 0u);
}

TEST(ZeroPage, TooManyE820EntriesIsAnError) {
  auto inputs = basic_inputs();
  inputs.e820.assign(E820_MAX_ENTRIES_ZEROPAGE + 1, E820Entry{0, kMiB, E820Type::kRam});
  EXPECT_THROW(build_zero_page(inputs), Error);
  inputs.e820.resize(E820_MAX_ENTRIES_ZEROPAGE);
  EXPECT_EQ(build_zero_page(inputs).e820_entries, E820_MAX_ENTRIES_ZEROPAGE);
}

TEST(ZeroPage, BzImageHeaderIsKeptAndLoaderFieldsAdded) {
  setup_header header{};
  header.header = 0x53726448;
  header.version = 0x020f;
  header.loadflags = kLoadedHigh;
  header.kernel_alignment = 0x200000;
  header.init_size = 0x1234000;
  header.type_of_loader = 0;
  auto inputs = basic_inputs();
  inputs.bzimage_header = header;
  auto params = build_zero_page(inputs);
  EXPECT_EQ(params.hdr.version, 0x020f);
  EXPECT_EQ(params.hdr.kernel_alignment, 0x200000u);
  EXPECT_EQ(params.hdr.init_size, 0x1234000u);
  EXPECT_EQ(params.hdr.loadflags, kLoadedHigh | kCanUseHeap);
  EXPECT_EQ(params.hdr.type_of_loader, 0xff);
  EXPECT_EQ(params.hdr.cmd_line_ptr, kCmdlineAddress);
  EXPECT_EQ(params.hdr.ramdisk_image, 0x0f000000u);
}

TEST(ZeroPage, NoInitrdLeavesRamdiskFieldsZero) {
  auto inputs = basic_inputs();
  inputs.initrd_address = 0;
  inputs.initrd_size = 0;
  auto params = build_zero_page(inputs);
  EXPECT_EQ(params.hdr.ramdisk_image, 0u);
  EXPECT_EQ(params.hdr.ramdisk_size, 0u);
}

}  // namespace
}  // namespace kdom::x86
