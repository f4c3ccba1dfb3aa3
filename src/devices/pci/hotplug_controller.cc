// The ACPI PCI hot-plug registers.
#include "devices/pci/hotplug_controller.h"

#include <algorithm>
#include <string>

#include "base/error.h"
#include "snapshot/state_json.h"

namespace kdom::devices::pci {

namespace {
constexpr int kFirstSlot = 1;  // slot 0 is the host bridge
constexpr int kLastSlot = 31;
}  // namespace

void PciHotplugController::raise(uint32_t& bits, int slot) {
  if (slot < kFirstSlot || slot > kLastSlot)
    throw Error("PCI slot " + std::to_string(slot) + " cannot be hot-plugged (slots 1-31 can)");
  {
    std::lock_guard lock(mutex_);
    bits |= 1u << slot;
  }
  line_->set_level(true);
  line_->set_level(false);
}

void PciHotplugController::announce_added(int slot) { raise(added_, slot); }

void PciHotplugController::request_removal(int slot) { raise(removals_, slot); }

void PciHotplugController::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (data.size() != 4 || (offset != kAddedOffset && offset != kRemovalOffset)) return;
  uint32_t value;
  {
    std::lock_guard lock(mutex_);
    uint32_t& bits = offset == kAddedOffset ? added_ : removals_;
    value = bits;
    bits = 0;
  }
  for (size_t i = 0; i < 4; ++i) data[i] = static_cast<uint8_t>(value >> (8 * i));
}

void PciHotplugController::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 4 || offset != kEjectOffset) return;
  const uint32_t value = uint32_t{data[0]} | uint32_t{data[1]} << 8 | uint32_t{data[2]} << 16 | uint32_t{data[3]} << 24;
  for (int slot = kFirstSlot; slot <= kLastSlot; ++slot)
    if (value & (1u << slot)) on_eject_(slot);
}

nlohmann::json PciHotplugController::save_state() const {
  std::lock_guard lock(mutex_);
  return {{"added", added_}, {"removals", removals_}};
}

void PciHotplugController::load_state(const nlohmann::json& state) {
  const std::string what = "PCI hot-plug registers";
  auto slot_bits = [&](const std::string& key) {
    const auto bits = static_cast<uint32_t>(snapshot::state_u64(state, key, what, UINT32_MAX));
    if (bits & ((1u << kFirstSlot) - 1))
      throw snapshot::StateError("saved state of " + what + ": '" + key + "' names slot 0, the host bridge");
    return bits;
  };
  const uint32_t added = slot_bits("added");
  const uint32_t removals = slot_bits("removals");
  std::lock_guard lock(mutex_);
  added_ = added;
  removals_ = removals;
}

}  // namespace kdom::devices::pci
