// Guest RAM allocation and bounds-checked access.
#include "memory/guest_memory.h"

#include <fcntl.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <sstream>

namespace kdom {

namespace {
constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kHugePageSize = 2 * 1024 * 1024;

std::string hex(uint64_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}
}  // namespace

GuestMemory::GuestMemory(const std::vector<GuestRange>& ranges) {
  uint64_t total = 0;
  uint64_t previous_end = 0;
  for (const auto& range : ranges) {
    if (range.size == 0 || range.start % kPageSize != 0 || range.size % kPageSize != 0)
      throw Error("guest memory range " + hex(range.start) + "+" + hex(range.size) + " is not page-aligned");
    if (range.end() < range.start) throw Error("guest memory range wraps past the top of the address space");
    if (range.start < previous_end) throw Error("guest memory ranges overlap or are unsorted");
    previous_end = range.end();
    total += range.size;
  }
  if (total == 0) throw Error("guest memory size is 0");
  memfd_ = UniqueFd(::memfd_create("kdom-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!memfd_.valid()) throw SystemError("memfd_create for guest RAM", errno);
  if (::ftruncate(memfd_.get(), static_cast<off_t>(total)) != 0)
    throw SystemError("cannot size guest RAM to " + std::to_string(total) + " bytes", errno);
  // Whoever else gets the fd can neither cut the RAM short (the guest would fault on it) nor grow it.
  if (::fcntl(memfd_.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    throw SystemError("cannot seal guest RAM's size", errno);
  // Aligned to 2 MiB and marked for transparent huge pages, as QEMU does with guest RAM:
  // huge pages from the first touch (fewer TLB and nested-paging misses), rather than small
  // ones that khugepaged would later copy into huge ones, moving guest memory under KVM.
  // For shared memory the kernel honours the mark only where
  // /sys/kernel/mm/transparent_hugepage/shmem_enabled allows it (advise; Debian's default is
  // never), see docs/architecture.md.
  mapping_ = Mapping::shared_aligned(memfd_.get(), total, kHugePageSize);
  if (::madvise(mapping_.data(), mapping_.size(), MADV_HUGEPAGE) != 0) {
    // No transparent huge pages on this host: small pages serve as well.
  }
  uint64_t offset = 0;
  for (const auto& range : ranges) {
    regions_.push_back(Region{range, mapping_.data() + offset, offset});
    dirty_.emplace_back(range.size / kPageSize);
    offset += range.size;
  }
}

uint64_t GuestMemory::total_size() const { return mapping_.size(); }

const GuestMemory::Region* GuestMemory::find(uint64_t gpa, uint64_t length) const {
  for (const auto& region : regions_) {
    if (gpa >= region.range.start && gpa - region.range.start <= region.range.size &&
        length <= region.range.size - (gpa - region.range.start)) {
      if (length == 0 && gpa == region.range.end()) continue;
      return &region;
    }
  }
  return nullptr;
}

bool GuestMemory::contains(uint64_t gpa, uint64_t length) const { return find(gpa, length) != nullptr; }

std::span<uint8_t> GuestMemory::slice(uint64_t gpa, uint64_t length) const {
  const Region* region = find(gpa, length);
  if (region == nullptr)
    throw GuestMemoryError("guest address range " + hex(gpa) + "+" + hex(length) + " is outside guest RAM");
  return {region->host + (gpa - region->range.start), static_cast<size_t>(length)};
}

std::vector<GuestRange> GuestMemory::populated(const Region& region) const {
  std::vector<GuestRange> ranges;
  const auto begin = static_cast<off_t>(region.file_offset);
  const auto end = static_cast<off_t>(region.file_offset + region.range.size);
  for (off_t data = begin; data < end;) {
    data = ::lseek(memfd_.get(), data, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // no data from here to the end of the file
    if (data < 0) throw SystemError("lseek(SEEK_DATA) on guest RAM", errno);
    if (data >= end) break;
    off_t hole = ::lseek(memfd_.get(), data, SEEK_HOLE);
    if (hole < 0) throw SystemError("lseek(SEEK_HOLE) on guest RAM", errno);
    hole = std::min(hole, end);
    ranges.push_back({region.range.start + static_cast<uint64_t>(data - begin), static_cast<uint64_t>(hole - data)});
    data = hole;
  }
  return ranges;
}

void GuestMemory::discard(uint64_t gpa, uint64_t length) const {
  if (gpa % kPageSize != 0 || length % kPageSize != 0)
    throw GuestMemoryError("guest range " + hex(gpa) + "+" + hex(length) + " to discard is not page-aligned");
  std::span<uint8_t> host = slice(gpa, length);
  if (length == 0) return;
  if (::madvise(host.data(), host.size(), MADV_REMOVE) != 0) throw SystemError("madvise(MADV_REMOVE)", errno);
  mark_dirty(gpa, length);
}

namespace {

// A full memory barrier on every thread of this process (membarrier(2)). A writer stores into
// guest RAM, then loads the logging flag (relaxed, no fence: the I/O path); the migration
// stores the flag, then reads guest RAM. Without a barrier on one side, each may miss the
// other's store (the writer's still in its store buffer): a page read before the write
// landed, and no mark. This puts the barrier on the rare side: after it returns, a writer
// that does not see the flag made its write visible before. Best effort where the kernel
// lacks membarrier (such a write would need to race the flag's store within nanoseconds).
void barrier_all_threads() {
  static const bool registered =
      ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  if (registered && ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace

void GuestMemory::start_dirty_log() {
  for (auto& bitmap : dirty_) bitmap.clear();
  dirty_logging_->store(true, std::memory_order_seq_cst);
  barrier_all_threads();
}

void GuestMemory::stop_dirty_log() {
  dirty_logging_->store(false, std::memory_order_relaxed);
  for (auto& bitmap : dirty_) bitmap.clear();
}

void GuestMemory::mark_dirty_pages(uint64_t gpa, uint64_t length) const {
  const uint64_t end = length > UINT64_MAX - gpa ? UINT64_MAX : gpa + length;
  for (size_t i = 0; i < regions_.size(); ++i) {
    const GuestRange& range = regions_[i].range;
    const uint64_t from = std::max(gpa, range.start);
    const uint64_t to = std::min(end, range.end());
    if (from >= to) continue;
    const uint64_t first_page = (from - range.start) / kPageSize;
    const uint64_t last_page = (to - 1 - range.start) / kPageSize;
    dirty_[i].mark(first_page, last_page - first_page + 1);
  }
}

std::vector<uint64_t> GuestMemory::take_dirty(size_t index) const {
  if (index >= dirty_.size()) throw GuestMemoryError("no guest RAM region " + std::to_string(index));
  return dirty_[index].take();
}

}  // namespace kdom
