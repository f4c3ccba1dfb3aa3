// Tests of bzImage handling: setup header validation (boot protocol version, 64-bit entry,
// truncation) and loading the protected-mode kernel at 1 MiB for the 64-bit entry.
#include "arch/x86/bzimage.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "arch/x86/layout.h"
#include "base/error.h"

namespace kdom::x86 {
namespace {

constexpr size_t kSetupHeaderOffset = 0x1f1;

// A synthetic bzImage: boot sector + setup sectors with a setup header, then the
// protected-mode kernel (a byte pattern).
struct BzImageBuilder {
  setup_header header{};
  size_t kernel_bytes = 0x3000;

  BzImageBuilder() {
    header.setup_sects = 2;
    header.boot_flag = 0xaa55;
    header.header = 0x53726448;  // "HdrS"
    header.version = 0x020f;
    header.xloadflags = 1;       // XLF_KERNEL_64
    header.loadflags = 1;        // LOADED_HIGH
    header.init_size = 4 * kMiB;
    header.cmdline_size = 2047;
    header.kernel_alignment = 0x200000;
    header.relocatable_kernel = 1;
    header.initrd_addr_max = 0x7fffffff;
    header.syssize = static_cast<uint32_t>((kernel_bytes + 15) / 16);
    // jmp short past the header (eb xx at 0x200): the header ends at 0x202 + xx.
    header.jump = static_cast<uint16_t>(0xeb | ((kSetupHeaderOffset + sizeof(setup_header) - 0x202) << 8));
  }

  size_t kernel_offset() const { return ((header.setup_sects == 0 ? 4u : header.setup_sects) + 1u) * 512u; }

  std::vector<uint8_t> build() const {
    std::vector<uint8_t> file(kernel_offset() + kernel_bytes, 0);
    std::memcpy(file.data() + kSetupHeaderOffset, &header, sizeof(header));
    for (size_t i = 0; i < kernel_bytes; ++i) file[kernel_offset() + i] = static_cast<uint8_t>(i * 7 + 3);
    return file;
  }
};

std::string error_of(auto&& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(BzImage, SetupHeaderLayoutMatchesTheBootProtocol) {
  // The header fields the loader relies on sit at their documented file offsets.
  auto file = BzImageBuilder().build();
  EXPECT_EQ(file[0x1f1], 2);                      // setup_sects
  EXPECT_EQ(file[0x200], 0xeb);                   // jump
  EXPECT_EQ(file[0x201], 0x6a);                   // header ends at 0x26c (protocol 2.15)
  EXPECT_EQ(file[0x1fe], 0x55);                   // boot_flag
  EXPECT_EQ(std::memcmp(&file[0x202], "HdrS", 4), 0);
  EXPECT_EQ(file[0x206], 0x0f);                   // version
  EXPECT_EQ(file[0x207], 0x02);
  EXPECT_EQ(file[0x236], 1);                      // xloadflags
  EXPECT_EQ(file[0x262], 0x40);                   // init_size = 0x400000
}

TEST(BzImage, LooksLikeBzImageNeedsTheHdrSSignature) {
  auto file = BzImageBuilder().build();
  EXPECT_TRUE(looks_like_bzimage(file));
  EXPECT_FALSE(looks_like_bzimage(std::span(file).first(0x205)));
  file[0x202] = 'X';
  EXPECT_FALSE(looks_like_bzimage(file));
}

TEST(BzImage, ParseAcceptsAValidImage) {
  BzImageBuilder builder;
  auto file = builder.build();
  auto image = parse_bzimage(file);
  EXPECT_EQ(image.kernel_offset, 3u * 512);
  EXPECT_EQ(image.kernel_size, builder.kernel_bytes);
  EXPECT_EQ(image.header.version, 0x020f);
  EXPECT_EQ(image.header.init_size, 4 * kMiB);
  EXPECT_EQ(image.header.cmdline_size, 2047u);
  EXPECT_EQ(image.header.setup_sects, 2);
}

TEST(BzImage, ZeroSetupSectorsMeansFour) {
  BzImageBuilder builder;
  builder.header.setup_sects = 0;
  auto file = builder.build();
  auto image = parse_bzimage(file);
  EXPECT_EQ(image.kernel_offset, 5u * 512);
  EXPECT_EQ(image.kernel_size, builder.kernel_bytes);
}

TEST(BzImage, ShortJumpLimitsTheHeaderCopied) {
  BzImageBuilder builder;
  auto file = builder.build();
  // The header's length comes from the jump at 0x200: ending it at 0x260 leaves init_size
  // (0x260) out, while cmdline_size (0x238) is still read.
  file[0x201] = 0x260 - 0x202;
  auto image = parse_bzimage(file);
  EXPECT_EQ(image.header.cmdline_size, 2047u);
  EXPECT_EQ(image.header.init_size, 0u);
}

TEST(BzImage, OldBootProtocolIsRejected) {
  BzImageBuilder builder;
  builder.header.version = 0x0200;
  auto file = builder.build();
  auto message = error_of([&] { parse_bzimage(file); });
  EXPECT_NE(message.find("boot protocol 2.0"), std::string::npos) << message;
  EXPECT_NE(message.find("2.12"), std::string::npos) << message;
}

TEST(BzImage, Protocol211IsRejectedAnd212Accepted) {
  BzImageBuilder builder;
  builder.header.version = 0x020b;
  EXPECT_THROW(parse_bzimage(builder.build()), Error);
  builder.header.version = 0x020c;
  EXPECT_NO_THROW(parse_bzimage(builder.build()));
}

TEST(BzImage, NoSixtyFourBitEntryIsRejected) {
  BzImageBuilder builder;
  builder.header.xloadflags = 0x2;  // XLF_CAN_BE_LOADED_ABOVE_4G only
  auto file = builder.build();
  auto message = error_of([&] { parse_bzimage(file); });
  EXPECT_NE(message.find("64-bit"), std::string::npos) << message;
}

TEST(BzImage, KernelOffsetPastTheEndIsRejected) {
  BzImageBuilder builder;
  auto file = builder.build();
  file.resize(builder.kernel_offset());  // setup only: no protected-mode kernel
  auto message = error_of([&] { parse_bzimage(file); });
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;

  builder.header.setup_sects = 60;  // 30 KiB of setup in a 13 KiB file
  file = BzImageBuilder(builder).build();
  file.resize(0x3000 + 3 * 512);
  message = error_of([&] { parse_bzimage(file); });
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST(BzImage, SyssizeLargerThanThePresentKernelIsRejected) {
  BzImageBuilder builder;
  auto file = builder.build();
  file.resize(file.size() - 0x100);
  auto message = error_of([&] { parse_bzimage(file); });
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(builder.kernel_bytes)), std::string::npos) << message;
}

TEST(BzImage, TruncatedSetupHeaderIsRejected) {
  auto file = BzImageBuilder().build();
  file.resize(0x210);  // HdrS present, header cut short
  auto message = error_of([&] { parse_bzimage(file); });
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST(BzImage, WithoutSignatureIsRejected) {
  std::vector<uint8_t> file(0x4000, 0);
  auto message = error_of([&] { parse_bzimage(file); });
  EXPECT_NE(message.find("HdrS"), std::string::npos) << message;
}

TEST(BzImage, LoadCopiesTheProtectedModeKernelToOneMiB) {
  BzImageBuilder builder;
  auto file = builder.build();
  auto image = parse_bzimage(file);
  GuestMemory memory({{0, 16 * kMiB}});
  auto loaded = load_bzimage(memory, file, image);
  EXPECT_EQ(loaded.load_address, 0x100000u);
  EXPECT_EQ(loaded.entry_64, 0x100200u);
  std::vector<uint8_t> copied(builder.kernel_bytes);
  memory.read(0x100000, copied.data(), copied.size());
  EXPECT_EQ(copied, std::vector<uint8_t>(file.begin() + static_cast<long>(image.kernel_offset), file.end()));
  // The setup code is not copied anywhere below 1 MiB.
  EXPECT_EQ(memory.read_object<uint8_t>(0x90000 + 0x1f1), 0);
}

TEST(BzImage, EndAddressCoversInitSize) {
  BzImageBuilder builder;
  builder.header.pref_address = 0;  // no preferred address: the runtime area starts at the load address
  auto file = builder.build();
  GuestMemory memory({{0, 16 * kMiB}});
  auto loaded = load_bzimage(memory, file, parse_bzimage(file));
  EXPECT_GE(loaded.end_address, 0x100000u + 4 * kMiB);
}

TEST(BzImage, EndAddressCoversKernelLargerThanInitSize) {
  BzImageBuilder builder;
  builder.header.init_size = 0x1000;  // smaller than the 0x3000-byte kernel
  auto file = builder.build();
  GuestMemory memory({{0, 16 * kMiB}});
  auto loaded = load_bzimage(memory, file, parse_bzimage(file));
  EXPECT_GE(loaded.end_address, 0x100000u + builder.kernel_bytes);
}

TEST(BzImage, TooSmallMemoryIsRejected) {
  BzImageBuilder builder;
  builder.header.init_size = 8 * kMiB;
  auto file = builder.build();
  auto image = parse_bzimage(file);
  GuestMemory memory({{0, 4 * kMiB}});
  auto message = error_of([&] { load_bzimage(memory, file, image); });
  EXPECT_NE(message.find("too small"), std::string::npos) << message;
  // Nothing was copied.
  EXPECT_EQ(memory.read_object<uint8_t>(0x100000), 0);
}

// The boot protocol (init_size): for a relocatable kernel the runtime start address is
// align_up(max(load_address, pref_address), kernel_alignment); the 64-bit entry relocates the
// kernel there (arch/x86/boot/compressed/head_64.S: LOAD_PHYSICAL_ADDR) before decompressing
// into [runtime_start, runtime_start + init_size). A kernel loaded at 1 MiB with a 16 MiB
// preferred address therefore uses memory up to 16 MiB + init_size.
TEST(BzImage, EndAddressCoversTheRuntimeAreaAtThePreferredAddress) {
  BzImageBuilder builder;
  builder.header.pref_address = 0x1000000;
  builder.header.init_size = 8 * kMiB;
  auto file = builder.build();
  GuestMemory memory({{0, 64 * kMiB}});
  auto loaded = load_bzimage(memory, file, parse_bzimage(file));
  EXPECT_GE(loaded.end_address, 0x1000000u + 8 * kMiB);
}

TEST(BzImage, MemoryBelowThePreferredAddressPlusInitSizeIsTooSmall) {
  BzImageBuilder builder;
  builder.header.pref_address = 0x1000000;
  builder.header.init_size = 8 * kMiB;
  auto file = builder.build();
  GuestMemory memory({{0, 20 * kMiB}});  // 1 MiB + init_size fits, 16 MiB + init_size does not
  EXPECT_THROW(load_bzimage(memory, file, parse_bzimage(file)), Error);
}

}  // namespace
}  // namespace kdom::x86
