// ELF64 parsing and loading. Every offset and size read from the file is checked against the
// file's length before use.
#include "arch/x86/elf_image.h"

#include <elf.h>

#include <cstring>
#include <string>

#include "base/error.h"

namespace kdom::x86 {

namespace {

constexpr uint32_t kXenElfNotePhys32Entry = 18;

bool range_in_file(std::span<const uint8_t> file, uint64_t offset, uint64_t length) {
  return offset <= file.size() && length <= file.size() - offset;
}

template <typename T>
T read_at(std::span<const uint8_t> file, uint64_t offset) {
  if (!range_in_file(file, offset, sizeof(T))) throw Error("kernel ELF is truncated");
  T value;
  std::memcpy(&value, file.data() + offset, sizeof(T));
  return value;
}

Elf64_Ehdr read_header(std::span<const uint8_t> file) {
  if (!looks_like_elf(file)) throw Error("kernel is not an ELF file");
  auto header = read_at<Elf64_Ehdr>(file, 0);
  if (header.e_ident[EI_CLASS] != ELFCLASS64) throw Error("kernel ELF is not 64-bit");
  if (header.e_ident[EI_DATA] != ELFDATA2LSB) throw Error("kernel ELF is not little-endian");
  if (header.e_machine != EM_X86_64) throw Error("kernel ELF is not for x86-64");
  if (header.e_phentsize != sizeof(Elf64_Phdr)) throw Error("kernel ELF has an unexpected program header size");
  if (header.e_phnum == 0) throw Error("kernel ELF has no program headers");
  if (!range_in_file(file, header.e_phoff, uint64_t{header.e_phnum} * sizeof(Elf64_Phdr)))
    throw Error("kernel ELF is truncated (program headers)");
  return header;
}

Elf64_Phdr program_header(std::span<const uint8_t> file, const Elf64_Ehdr& header, unsigned index) {
  return read_at<Elf64_Phdr>(file, header.e_phoff + uint64_t{index} * sizeof(Elf64_Phdr));
}

uint64_t align4(uint64_t value) { return (value + 3) & ~uint64_t{3}; }

std::optional<uint32_t> pvh_entry_in_notes(std::span<const uint8_t> notes) {
  uint64_t offset = 0;
  while (offset + sizeof(Elf64_Nhdr) <= notes.size()) {
    auto note = read_at<Elf64_Nhdr>(notes, offset);
    uint64_t name_offset = offset + sizeof(Elf64_Nhdr);
    uint64_t desc_offset = name_offset + align4(note.n_namesz);
    uint64_t next = desc_offset + align4(note.n_descsz);
    if (!range_in_file(notes, name_offset, align4(note.n_namesz)) ||
        !range_in_file(notes, desc_offset, note.n_descsz))
      throw Error("kernel ELF has a malformed note");
    bool is_xen = note.n_namesz == 4 && std::memcmp(notes.data() + name_offset, "Xen", 4) == 0;
    if (is_xen && note.n_type == kXenElfNotePhys32Entry) {
      if (note.n_descsz == 4) return read_at<uint32_t>(notes, desc_offset);
      if (note.n_descsz == 8) {
        uint64_t entry = read_at<uint64_t>(notes, desc_offset);
        if (entry > UINT32_MAX) throw Error("kernel ELF's PVH entry is above 4 GiB");
        return static_cast<uint32_t>(entry);
      }
      throw Error("kernel ELF's PVH entry note has a bad size");
    }
    offset = next;
  }
  return std::nullopt;
}

}  // namespace

bool looks_like_elf(std::span<const uint8_t> file) {
  return file.size() >= sizeof(Elf64_Ehdr) && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0;
}

std::optional<uint32_t> find_pvh_entry(std::span<const uint8_t> file) {
  auto header = read_header(file);
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    auto phdr = program_header(file, header, i);
    if (phdr.p_type != PT_NOTE) continue;
    if (!range_in_file(file, phdr.p_offset, phdr.p_filesz)) throw Error("kernel ELF is truncated (notes)");
    if (auto entry = pvh_entry_in_notes(file.subspan(phdr.p_offset, phdr.p_filesz))) return entry;
  }
  return std::nullopt;
}

LoadedElf load_elf(const GuestMemory& memory, std::span<const uint8_t> file) {
  auto header = read_header(file);
  LoadedElf loaded;
  loaded.entry = header.e_entry;
  loaded.pvh_entry = find_pvh_entry(file);
  loaded.lowest_address = UINT64_MAX;
  bool any = false;
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    auto phdr = program_header(file, header, i);
    if (phdr.p_type != PT_LOAD || phdr.p_memsz == 0) continue;
    if (phdr.p_filesz > phdr.p_memsz) throw Error("kernel ELF segment has file size above memory size");
    if (!range_in_file(file, phdr.p_offset, phdr.p_filesz)) throw Error("kernel ELF is truncated (segment data)");
    std::span<uint8_t> target;
    try {
      target = memory.slice(phdr.p_paddr, phdr.p_memsz);
    } catch (const GuestMemoryError&) {
      throw Error("kernel ELF segment at physical address " + std::to_string(phdr.p_paddr) + " (" +
                  std::to_string(phdr.p_memsz) + " bytes) does not fit in guest memory");
    }
    std::memcpy(target.data(), file.data() + phdr.p_offset, phdr.p_filesz);
    std::memset(target.data() + phdr.p_filesz, 0, phdr.p_memsz - phdr.p_filesz);
    loaded.lowest_address = std::min(loaded.lowest_address, phdr.p_paddr);
    loaded.end_address = std::max(loaded.end_address, phdr.p_paddr + phdr.p_memsz);
    any = true;
  }
  if (!any) throw Error("kernel ELF has no loadable segments");
  return loaded;
}

}  // namespace kdom::x86
