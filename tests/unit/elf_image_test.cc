// Tests of ELF64 kernel loading: PT_LOAD placement (with zero-filled bss), the Xen PVH entry
// note, and rejection of malformed files with a message naming the problem.
#include "arch/x86/elf_image.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "arch/x86/layout.h"
#include "base/error.h"

namespace kdom::x86 {
namespace {

// A synthetic ELF64 image: header, program headers, then the segment data.
class ElfBuilder {
 public:
  ElfBuilder() {
    std::memcpy(header_.e_ident, ELFMAG, SELFMAG);
    header_.e_ident[EI_CLASS] = ELFCLASS64;
    header_.e_ident[EI_DATA] = ELFDATA2LSB;
    header_.e_ident[EI_VERSION] = EV_CURRENT;
    header_.e_type = ET_EXEC;
    header_.e_machine = EM_X86_64;
    header_.e_version = EV_CURRENT;
    header_.e_entry = 0x1000000;
    header_.e_phoff = sizeof(Elf64_Ehdr);
    header_.e_ehsize = sizeof(Elf64_Ehdr);
    header_.e_phentsize = sizeof(Elf64_Phdr);
  }

  Elf64_Ehdr& header() { return header_; }

  // Adds a segment whose file bytes are `data`; returns its index.
  size_t add(uint32_t type, uint64_t paddr, std::vector<uint8_t> data, uint64_t memsz) {
    Elf64_Phdr phdr{};
    phdr.p_type = type;
    phdr.p_flags = PF_R;
    phdr.p_paddr = paddr;
    phdr.p_vaddr = paddr + 0xffffffff80000000ULL;
    phdr.p_filesz = data.size();
    phdr.p_memsz = memsz;
    phdr.p_align = 4;
    phdrs_.push_back(phdr);
    data_.push_back(std::move(data));
    return phdrs_.size() - 1;
  }
  Elf64_Phdr& phdr(size_t index) { return phdrs_[index]; }

  // Lays the file out; program header offsets are filled in unless `keep_offsets`.
  std::vector<uint8_t> build(bool keep_offsets = false) {
    header_.e_phnum = static_cast<uint16_t>(phdrs_.size());
    uint64_t offset = sizeof(Elf64_Ehdr) + phdrs_.size() * sizeof(Elf64_Phdr);
    std::vector<uint8_t> file(offset);
    for (size_t i = 0; i < phdrs_.size(); ++i) {
      offset = (file.size() + 7) & ~uint64_t{7};
      file.resize(offset, 0);
      if (!keep_offsets) phdrs_[i].p_offset = offset;
      file.insert(file.end(), data_[i].begin(), data_[i].end());
    }
    std::memcpy(file.data(), &header_, sizeof(header_));
    if (!phdrs_.empty())
      std::memcpy(file.data() + sizeof(Elf64_Ehdr), phdrs_.data(), phdrs_.size() * sizeof(Elf64_Phdr));
    return file;
  }

 private:
  Elf64_Ehdr header_{};
  std::vector<Elf64_Phdr> phdrs_;
  std::vector<std::vector<uint8_t>> data_;
};

std::vector<uint8_t> bytes(size_t count, uint8_t first) {
  std::vector<uint8_t> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = static_cast<uint8_t>(first + i);
  return out;
}

// One ELF note: header, name padded to 4 bytes, descriptor padded to 4 bytes.
std::vector<uint8_t> note(const std::string& name, uint32_t type, const std::vector<uint8_t>& desc) {
  auto align4 = [](size_t value) { return (value + 3) & ~size_t{3}; };
  Elf64_Nhdr header{static_cast<Elf64_Word>(name.size() + 1), static_cast<Elf64_Word>(desc.size()), type};
  size_t desc_offset = sizeof(header) + align4(name.size() + 1);
  std::vector<uint8_t> out(desc_offset + align4(desc.size()), 0);
  std::memcpy(out.data(), &header, sizeof(header));
  std::memcpy(out.data() + sizeof(header), name.data(), name.size());
  if (!desc.empty()) std::memcpy(out.data() + desc_offset, desc.data(), desc.size());
  return out;
}

std::vector<uint8_t> le32(uint32_t value) {
  std::vector<uint8_t> out(4);
  std::memcpy(out.data(), &value, 4);
  return out;
}
std::vector<uint8_t> le64(uint64_t value) {
  std::vector<uint8_t> out(8);
  std::memcpy(out.data(), &value, 8);
  return out;
}

constexpr uint32_t kPvhNoteType = 18;  // XEN_ELFNOTE_PHYS32_ENTRY

// Two PT_LOAD segments (the second with bss) at 16 MiB and 17 MiB, plus a PT_NOTE.
ElfBuilder kernel_with_notes(const std::vector<uint8_t>& notes) {
  ElfBuilder elf;
  elf.add(PT_LOAD, 0x1000000, bytes(300, 1), 300);
  elf.add(PT_LOAD, 0x1100000, bytes(100, 7), 0x2000);
  if (!notes.empty()) elf.add(PT_NOTE, 0, notes, 0);
  return elf;
}

void expect_error(const GuestMemory& memory, const std::vector<uint8_t>& file, const std::string& part) {
  try {
    load_elf(memory, file);
    ADD_FAILURE() << "expected an Error containing \"" << part << "\"";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(part), std::string::npos) << "message: " << error.what();
  }
}

class ElfImage : public ::testing::Test {
 protected:
  GuestMemory memory_{{{0, 32 * kMiB}}};
};

TEST_F(ElfImage, LooksLikeElfNeedsMagicAndAWholeHeader) {
  auto file = kernel_with_notes({}).build();
  EXPECT_TRUE(looks_like_elf(file));
  EXPECT_FALSE(looks_like_elf(std::span(file).first(sizeof(Elf64_Ehdr) - 1)));
  file[1] = 'X';
  EXPECT_FALSE(looks_like_elf(file));
}

TEST_F(ElfImage, LoadsSegmentsAtTheirPhysicalAddresses) {
  auto elf = kernel_with_notes({});
  auto file = elf.build();
  // Dirty the bss area first: the loader must clear it.
  std::vector<uint8_t> junk(0x2000, 0xcc);
  memory_.write(0x1100000, junk.data(), junk.size());

  auto loaded = load_elf(memory_, file);
  EXPECT_EQ(loaded.entry, 0x1000000u);
  EXPECT_FALSE(loaded.pvh_entry.has_value());
  EXPECT_EQ(loaded.lowest_address, 0x1000000u);
  EXPECT_EQ(loaded.end_address, 0x1100000u + 0x2000);

  std::vector<uint8_t> first(300);
  memory_.read(0x1000000, first.data(), first.size());
  EXPECT_EQ(first, bytes(300, 1));
  std::vector<uint8_t> second(0x2000);
  memory_.read(0x1100000, second.data(), second.size());
  EXPECT_EQ(std::vector<uint8_t>(second.begin(), second.begin() + 100), bytes(100, 7));
  for (size_t i = 100; i < second.size(); ++i) ASSERT_EQ(second[i], 0) << "bss byte " << i;
  // Nothing beyond memsz is touched.
  EXPECT_EQ(memory_.read_object<uint8_t>(0x1102000), 0);
}

TEST_F(ElfImage, NonLoadSegmentsAreNotCopied) {
  auto file = kernel_with_notes(note("Foo", 1, le32(0xaabbccdd))).build();
  load_elf(memory_, file);
  // The PT_NOTE has p_paddr 0: nothing is written there.
  EXPECT_EQ(memory_.read_object<uint64_t>(0), 0u);
}

TEST_F(ElfImage, FindsPvhEntryWithFourByteDescriptor) {
  auto file = kernel_with_notes(note("Xen", kPvhNoteType, le32(0x1000123))).build();
  EXPECT_EQ(find_pvh_entry(file), std::optional<uint32_t>(0x1000123));
  auto loaded = load_elf(memory_, file);
  ASSERT_TRUE(loaded.pvh_entry.has_value());
  EXPECT_EQ(*loaded.pvh_entry, 0x1000123u);
  EXPECT_EQ(loaded.entry, 0x1000000u);  // e_entry is still reported
}

TEST_F(ElfImage, FindsPvhEntryWithEightByteDescriptor) {
  auto file = kernel_with_notes(note("Xen", kPvhNoteType, le64(0x1000456))).build();
  EXPECT_EQ(load_elf(memory_, file).pvh_entry, std::optional<uint32_t>(0x1000456));
}

TEST_F(ElfImage, FindsPvhEntryAfterOtherNotes) {
  auto notes = note("GNU", 3, bytes(20, 0));                    // a build id
  auto xen_other = note("Xen", 6, {'l', 'i', 'n', 'u', 'x', 0});  // XEN_ELFNOTE_GUEST_OS
  auto pvh = note("Xen", kPvhNoteType, le32(0x1000789));
  notes.insert(notes.end(), xen_other.begin(), xen_other.end());
  notes.insert(notes.end(), pvh.begin(), pvh.end());
  auto file = kernel_with_notes(notes).build();
  EXPECT_EQ(find_pvh_entry(file), std::optional<uint32_t>(0x1000789));
}

TEST_F(ElfImage, NoteOfAnotherOwnerOrTypeIsNotThePvhEntry) {
  auto notes = note("Xe", kPvhNoteType, le32(0x1000000));
  auto other_type = note("Xen", 17, le32(0x1000000));
  notes.insert(notes.end(), other_type.begin(), other_type.end());
  auto file = kernel_with_notes(notes).build();
  EXPECT_FALSE(find_pvh_entry(file).has_value());
  EXPECT_FALSE(load_elf(memory_, file).pvh_entry.has_value());
}

TEST_F(ElfImage, WithoutNotesThereIsNoPvhEntry) {
  auto file = kernel_with_notes({}).build();
  EXPECT_FALSE(find_pvh_entry(file).has_value());
}

TEST_F(ElfImage, PvhEntryAboveFourGiBIsRejected) {
  auto file = kernel_with_notes(note("Xen", kPvhNoteType, le64(0x100000000ULL))).build();
  expect_error(memory_, file, "above 4 GiB");
}

TEST_F(ElfImage, PvhNoteWithBadDescriptorSizeIsRejected) {
  auto file = kernel_with_notes(note("Xen", kPvhNoteType, {1, 2})).build();
  expect_error(memory_, file, "bad size");
}

TEST_F(ElfImage, TruncatedHeaderIsRejected) {
  auto file = kernel_with_notes({}).build();
  file.resize(40);
  expect_error(memory_, file, "not an ELF");
}

TEST_F(ElfImage, ProgramHeadersBeyondTheFileAreRejected) {
  auto elf = kernel_with_notes({});
  auto file = elf.build();
  Elf64_Ehdr header = elf.header();
  header.e_phoff = file.size() - sizeof(Elf64_Phdr) / 2;
  std::memcpy(file.data(), &header, sizeof(header));
  expect_error(memory_, file, "truncated (program headers)");
  header.e_phoff = UINT64_MAX - 8;  // offset + size overflows
  std::memcpy(file.data(), &header, sizeof(header));
  expect_error(memory_, file, "truncated (program headers)");
}

TEST_F(ElfImage, SegmentDataBeyondTheFileIsRejected) {
  auto elf = kernel_with_notes({});
  elf.build();
  elf.phdr(1).p_offset = 0x10000;  // the file is much shorter
  auto file = elf.build(/*keep_offsets=*/true);
  expect_error(memory_, file, "truncated (segment data)");
}

TEST_F(ElfImage, SegmentFileSizeRunningPastTheEndIsRejected) {
  auto elf = kernel_with_notes({});
  auto file = elf.build();
  elf.phdr(1).p_filesz = 0x1000;  // only 100 bytes are there
  file = elf.build(/*keep_offsets=*/true);
  expect_error(memory_, file, "truncated (segment data)");
}

TEST_F(ElfImage, SegmentOffsetPlusSizeOverflowIsRejected) {
  auto elf = kernel_with_notes({});
  elf.build();
  elf.phdr(0).p_offset = UINT64_MAX - 10;
  auto file = elf.build(/*keep_offsets=*/true);
  expect_error(memory_, file, "truncated (segment data)");
}

TEST_F(ElfImage, FileSizeAboveMemorySizeIsRejected) {
  auto elf = kernel_with_notes({});
  elf.phdr(0).p_memsz = 100;  // filesz 300
  expect_error(memory_, elf.build(), "file size above memory size");
}

TEST_F(ElfImage, SegmentOutsideGuestMemoryIsRejected) {
  auto elf = kernel_with_notes({});
  elf.phdr(1).p_paddr = 64 * kMiB;
  expect_error(memory_, elf.build(), "does not fit in guest memory");
}

TEST_F(ElfImage, SegmentRunningPastTheEndOfGuestMemoryIsRejected) {
  auto elf = kernel_with_notes({});
  elf.phdr(1).p_paddr = 32 * kMiB - 0x1000;  // memsz 0x2000
  expect_error(memory_, elf.build(), "does not fit in guest memory");
}

TEST_F(ElfImage, SegmentWhoseAddressPlusSizeWrapsIsRejected) {
  auto elf = kernel_with_notes({});
  elf.phdr(1).p_paddr = UINT64_MAX - 0xfff;
  expect_error(memory_, elf.build(), "does not fit in guest memory");
}

TEST_F(ElfImage, WrongMachineIsRejected) {
  auto elf = kernel_with_notes({});
  elf.header().e_machine = EM_AARCH64;
  expect_error(memory_, elf.build(), "not for x86-64");
}

TEST_F(ElfImage, ThirtyTwoBitClassIsRejected) {
  auto elf = kernel_with_notes({});
  elf.header().e_ident[EI_CLASS] = ELFCLASS32;
  expect_error(memory_, elf.build(), "not 64-bit");
}

TEST_F(ElfImage, BigEndianIsRejected) {
  auto elf = kernel_with_notes({});
  elf.header().e_ident[EI_DATA] = ELFDATA2MSB;
  expect_error(memory_, elf.build(), "little-endian");
}

TEST_F(ElfImage, UnexpectedProgramHeaderSizeIsRejected) {
  auto elf = kernel_with_notes({});
  auto file = elf.build();
  elf.header().e_phentsize = sizeof(Elf64_Phdr) - 8;
  std::memcpy(file.data(), &elf.header(), sizeof(Elf64_Ehdr));
  expect_error(memory_, file, "program header size");
}

TEST_F(ElfImage, NoProgramHeadersIsRejected) {
  ElfBuilder elf;
  expect_error(memory_, elf.build(), "no program headers");
}

TEST_F(ElfImage, NoLoadableSegmentIsRejected) {
  ElfBuilder elf;
  elf.add(PT_NOTE, 0, note("GNU", 3, bytes(8, 0)), 0);
  elf.add(PT_LOAD, 0x1000000, {}, 0);  // empty: nothing to load
  expect_error(memory_, elf.build(), "no loadable segments");
}

TEST_F(ElfImage, NoteWithNameRunningPastTheEndIsRejected) {
  auto notes = note("Xen", kPvhNoteType, le32(0x1000000));
  Elf64_Nhdr header{};
  std::memcpy(&header, notes.data(), sizeof(header));
  header.n_namesz = 0x1000;
  std::memcpy(notes.data(), &header, sizeof(header));
  auto file = kernel_with_notes(notes).build();
  EXPECT_THROW(find_pvh_entry(file), Error);
  expect_error(memory_, file, "malformed note");
}

TEST_F(ElfImage, NoteWithHugeNameSizeIsRejected) {
  auto notes = note("Xen", kPvhNoteType, le32(0x1000000));
  Elf64_Nhdr header{};
  std::memcpy(&header, notes.data(), sizeof(header));
  header.n_namesz = UINT32_MAX;  // align4 must not wrap to a small number
  std::memcpy(notes.data(), &header, sizeof(header));
  expect_error(memory_, kernel_with_notes(notes).build(), "malformed note");
}

TEST_F(ElfImage, NoteWithDescriptorRunningPastTheEndIsRejected) {
  auto notes = note("Xen", kPvhNoteType, le32(0x1000000));
  Elf64_Nhdr header{};
  std::memcpy(&header, notes.data(), sizeof(header));
  header.n_descsz = 0x100;
  std::memcpy(notes.data(), &header, sizeof(header));
  expect_error(memory_, kernel_with_notes(notes).build(), "malformed note");
}

TEST_F(ElfImage, NoteSegmentBeyondTheFileIsRejected) {
  auto elf = kernel_with_notes(note("Xen", kPvhNoteType, le32(0x1000000)));
  elf.build();
  elf.phdr(2).p_offset = 0x100000;
  expect_error(memory_, elf.build(/*keep_offsets=*/true), "truncated (notes)");
}

TEST_F(ElfImage, MalformedFileLeavesNoteFreeMemoryUntouched) {
  // A malformed note is found before any segment is copied.
  auto notes = note("Xen", kPvhNoteType, le32(0x1000000));
  Elf64_Nhdr header{};
  std::memcpy(&header, notes.data(), sizeof(header));
  header.n_descsz = 0x100;
  std::memcpy(notes.data(), &header, sizeof(header));
  EXPECT_THROW(load_elf(memory_, kernel_with_notes(notes).build()), Error);
  EXPECT_EQ(memory_.read_object<uint8_t>(0x1000000), 0);
}

}  // namespace
}  // namespace kdom::x86
