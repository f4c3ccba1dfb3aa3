// Builds the boot page tables.
#include "arch/x86/page_tables.h"

#include "arch/x86/layout.h"

namespace kdom::x86 {

namespace {
constexpr uint64_t kPresent = 1ULL << 0;
constexpr uint64_t kWritable = 1ULL << 1;
constexpr uint64_t kLargePage = 1ULL << 7;
constexpr uint64_t kPageTableSize = 4096;
constexpr uint64_t kEntriesPerTable = 512;
constexpr uint64_t kLargePageSize = 2 * kMiB;
}  // namespace

uint64_t write_identity_page_tables(const GuestMemory& memory) {
  constexpr uint64_t kPdCount = kIdentityMappedBytes / (kEntriesPerTable * kLargePageSize);
  memory.write_object<uint64_t>(kPml4Address, kPdptAddress | kPresent | kWritable);
  for (uint64_t pd = 0; pd < kPdCount; ++pd) {
    uint64_t pd_address = kPdAddress + pd * kPageTableSize;
    memory.write_object<uint64_t>(kPdptAddress + pd * 8, pd_address | kPresent | kWritable);
    for (uint64_t i = 0; i < kEntriesPerTable; ++i) {
      uint64_t physical = (pd * kEntriesPerTable + i) * kLargePageSize;
      memory.write_object<uint64_t>(pd_address + i * 8, physical | kPresent | kWritable | kLargePage);
    }
  }
  return kPml4Address;
}

}  // namespace kdom::x86
