// bzImage setup header parsing and loading.
#include "arch/x86/bzimage.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "arch/x86/layout.h"
#include "base/error.h"

namespace kdom::x86 {

namespace {
constexpr uint64_t kSetupHeaderOffset = 0x1f1;
constexpr uint64_t kMagicOffset = 0x202;
constexpr uint64_t kJumpEndOffset = 0x201;  // header length = 0x202 + this byte - 0x1f1
constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kMinimumProtocol = 0x020c;
constexpr uint16_t kXlfKernel64 = 1 << 0;
constexpr uint64_t kEntry64Offset = 0x200;
}  // namespace

bool looks_like_bzimage(std::span<const uint8_t> file) {
  if (file.size() < kMagicOffset + 4) return false;
  uint32_t magic;
  std::memcpy(&magic, file.data() + kMagicOffset, 4);
  return magic == kHdrSMagic;
}

BzImage parse_bzimage(std::span<const uint8_t> file) {
  if (!looks_like_bzimage(file)) throw Error("kernel is not a bzImage (no HdrS signature)");
  BzImage image;
  uint64_t header_end = kMagicOffset + file[kJumpEndOffset];
  uint64_t header_length = std::min<uint64_t>(header_end - kSetupHeaderOffset, sizeof(setup_header));
  if (file.size() < kSetupHeaderOffset + header_length) throw Error("bzImage is truncated (setup header)");
  std::memcpy(&image.header, file.data() + kSetupHeaderOffset, header_length);
  const auto& header = image.header;
  if (header.version < kMinimumProtocol)
    throw Error("bzImage uses boot protocol " + std::to_string(header.version >> 8) + "." +
                std::to_string(header.version & 0xff) + "; kdom needs 2.12 or later");
  if ((header.xloadflags & kXlfKernel64) == 0) throw Error("bzImage has no 64-bit entry point");
  uint64_t setup_sectors = header.setup_sects == 0 ? 4 : header.setup_sects;
  image.kernel_offset = (setup_sectors + 1) * 512;
  if (image.kernel_offset >= file.size()) throw Error("bzImage is truncated (no protected-mode kernel)");
  image.kernel_size = file.size() - image.kernel_offset;
  if (header.syssize != 0 && uint64_t{header.syssize} * 16 > image.kernel_size)
    throw Error("bzImage is truncated: header says " + std::to_string(uint64_t{header.syssize} * 16) +
                " bytes of kernel, file has " + std::to_string(image.kernel_size));
  return image;
}

LoadedBzImage load_bzimage(const GuestMemory& memory, std::span<const uint8_t> file, const BzImage& image) {
  LoadedBzImage loaded;
  loaded.load_address = kHighMemoryStart;
  loaded.entry_64 = loaded.load_address + kEntry64Offset;
  // The kernel moves itself up to its preferred address (aligned to kernel_alignment) and
  // decompresses there, so it owns [runtime start, runtime start + init_size) as well as the
  // bytes loaded at 1 MiB.
  uint64_t alignment = std::max<uint64_t>(image.header.kernel_alignment, 1);
  uint64_t runtime_start = std::max<uint64_t>(loaded.load_address, image.header.pref_address);
  runtime_start = (runtime_start + alignment - 1) / alignment * alignment;
  loaded.end_address = std::max(loaded.load_address + image.kernel_size, runtime_start + image.header.init_size);
  if (!memory.contains(loaded.load_address, loaded.end_address - loaded.load_address))
    throw Error("guest memory is too small for this kernel: it needs at least " +
                std::to_string((loaded.end_address + kMiB - 1) / kMiB) + " MiB");
  memory.write(loaded.load_address, file.data() + image.kernel_offset, image.kernel_size);
  return loaded;
}

}  // namespace kdom::x86
