// Address range lookup for the bus.
#include "devices/bus.h"

#include <algorithm>

#include "base/error.h"

namespace kdom::devices {

void Bus::add(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device) {
  if (length == 0 || base + length < base) throw Error("bus range is empty or wraps");
  auto next = entries_.lower_bound(base);
  if (next != entries_.end() && next->first < base + length) throw Error("bus ranges overlap");
  if (next != entries_.begin()) {
    auto previous = std::prev(next);
    if (previous->first + previous->second.length > base) throw Error("bus ranges overlap");
  }
  entries_.emplace(base, Entry{length, std::move(device)});
}

const std::pair<const uint64_t, Bus::Entry>* Bus::find(uint64_t address, uint64_t length) const {
  auto it = entries_.upper_bound(address);
  if (it == entries_.begin()) return nullptr;
  --it;
  uint64_t offset = address - it->first;
  if (offset >= it->second.length || length > it->second.length - offset) return nullptr;
  return &*it;
}

bool Bus::read(uint64_t address, std::span<uint8_t> data) const {
  const auto* entry = find(address, data.size());
  if (entry == nullptr) {
    std::fill(data.begin(), data.end(), 0xff);
    return false;
  }
  entry->second.device->read(address - entry->first, data);
  return true;
}

bool Bus::write(uint64_t address, std::span<const uint8_t> data) const {
  const auto* entry = find(address, data.size());
  if (entry == nullptr) return false;
  entry->second.device->write(address - entry->first, data);
  return true;
}

}  // namespace kdom::devices
