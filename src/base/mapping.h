// Mapping: sole owner of an mmap()ed region, unmapped when the owner goes away.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace kdom {

class Mapping {
 public:
  Mapping() = default;
  // Maps `length` bytes; throws SystemError on failure.
  static Mapping anonymous(size_t length, int extra_flags = 0);
  // Private anonymous memory whose start is a multiple of `alignment` (a power of two, a
  // multiple of the page size), so that huge pages of that size can back it from its start.
  static Mapping anonymous_aligned(size_t length, size_t alignment);
  // A shared, read-write mapping of `length` bytes of `fd` from offset 0, its start a multiple
  // of `alignment` as above: what one process writes there, another mapping of the file sees.
  static Mapping shared_aligned(int fd, size_t length, size_t alignment);
  static Mapping of_fd(int fd, size_t length, int prot, int flags, off_t offset = 0);

  Mapping(Mapping&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      length_ = std::exchange(other.length_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  uint8_t* data() const { return static_cast<uint8_t*>(data_); }
  size_t size() const { return length_; }
  void reset();

 private:
  Mapping(void* data, size_t length) : data_(data), length_(length) {}
  void* data_ = nullptr;
  size_t length_ = 0;
};

}  // namespace kdom
