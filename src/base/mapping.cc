// mmap()/munmap() wrappers for Mapping.
#include "base/mapping.h"

#include "base/error.h"

namespace kdom {

Mapping Mapping::anonymous(size_t length, int extra_flags) {
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags, -1, 0);
  if (p == MAP_FAILED) throw SystemError("cannot map " + std::to_string(length) + " bytes", errno);
  return Mapping(p, length);
}

Mapping Mapping::anonymous_aligned(size_t length, size_t alignment) {
  // Map enough to hold an aligned start, then give back the slack on both sides.
  Mapping larger = anonymous(length + alignment);
  const auto start = reinterpret_cast<uintptr_t>(larger.data_);
  const uintptr_t aligned = (start + alignment - 1) & ~(uintptr_t{alignment} - 1);
  const size_t head = aligned - start;
  const size_t tail = alignment - head;
  void* base = std::exchange(larger.data_, nullptr);
  larger.length_ = 0;
  if (head > 0) ::munmap(base, head);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + length), tail);
  return Mapping(reinterpret_cast<void*>(aligned), length);
}

Mapping Mapping::shared_aligned(int fd, size_t length, size_t alignment) {
  // The file's pages take the place of an aligned anonymous reservation (MAP_FIXED over our own
  // range), so nothing else can land there in between.
  Mapping reserved = anonymous_aligned(length, alignment);
  void* p = ::mmap(reserved.data_, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) throw SystemError("cannot map " + std::to_string(length) + " bytes of a file", errno);
  return reserved;
}

Mapping Mapping::of_fd(int fd, size_t length, int prot, int flags, off_t offset) {
  void* p = ::mmap(nullptr, length, prot, flags, fd, offset);
  if (p == MAP_FAILED) throw SystemError("mmap of fd failed", errno);
  return Mapping(p, length);
}

void Mapping::reset() {
  if (data_ != nullptr) ::munmap(data_, length_);
  data_ = nullptr;
  length_ = 0;
}

}  // namespace kdom
