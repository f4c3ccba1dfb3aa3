// GuestMemory: the guest's RAM, as host mappings of guest-physical ranges. Every access by
// guest-physical address is bounds-checked: an address or length the guest (or a loader)
// gives that is not wholly inside one RAM region throws GuestMemoryError and touches nothing.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/error.h"
#include "base/mapping.h"

namespace kdom {

class GuestMemoryError : public Error {
 public:
  using Error::Error;
};

struct GuestRange {
  uint64_t start = 0;
  uint64_t size = 0;
  uint64_t end() const { return start + size; }
};

class GuestMemory {
 public:
  struct Region {
    GuestRange range;
    uint8_t* host = nullptr;
  };

  // Maps one host region per range; ranges must be page-aligned, sorted and disjoint.
  explicit GuestMemory(const std::vector<GuestRange>& ranges);

  const std::vector<Region>& regions() const { return regions_; }
  uint64_t total_size() const;

  // The host bytes for [gpa, gpa + length); throws GuestMemoryError when any of it lies
  // outside guest RAM or crosses from one region into another.
  std::span<uint8_t> slice(uint64_t gpa, uint64_t length) const;
  bool contains(uint64_t gpa, uint64_t length) const;

  // Gives the host memory behind [gpa, gpa + length) back to the host (madvise
  // MADV_DONTNEED): the range reads as zeros afterwards and is backed again on the next
  // touch. The range must be page-aligned and wholly inside one RAM region, else
  // GuestMemoryError and nothing is discarded.
  void discard(uint64_t gpa, uint64_t length) const;

  void write(uint64_t gpa, const void* data, uint64_t length) const {
    if (length != 0) std::memcpy(slice(gpa, length).data(), data, length);
  }
  void read(uint64_t gpa, void* data, uint64_t length) const {
    if (length != 0) std::memcpy(data, slice(gpa, length).data(), length);
  }
  template <typename T>
  void write_object(uint64_t gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    write(gpa, &value, sizeof(T));
  }
  template <typename T>
  T read_object(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    read(gpa, &value, sizeof(T));
    return value;
  }

 private:
  const Region* find(uint64_t gpa, uint64_t length) const;
  Mapping mapping_;
  std::vector<Region> regions_;
};

}  // namespace kdom
