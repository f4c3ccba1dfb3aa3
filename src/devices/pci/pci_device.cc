// PciDevice: type-0 configuration space with per-byte write masks, BARs and capabilities.
#include "devices/pci/pci_device.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <string>

#include "base/error.h"
#include "snapshot/state_json.h"

namespace kdom::devices::pci {
namespace {

// Command bits a guest may change: I/O, memory, bus master, parity error response, SERR#,
// interrupt disable.
constexpr uint16_t kCommandWritable = 0x0547;

std::string hex_value(uint32_t value, int digits) {
  char text[16];
  std::snprintf(text, sizeof(text), "%0*x", digits, value);
  return text;
}

}  // namespace

PciDevice::PciDevice(const PciIds& ids) : ids_(ids) {
  set_config_u16(kVendorIdOffset, ids.vendor_id);
  set_config_u16(kDeviceIdOffset, ids.device_id);
  config_[kRevisionOffset] = ids.revision;
  config_[kClassCodeOffset] = static_cast<uint8_t>(ids.class_code);
  config_[kClassCodeOffset + 1] = static_cast<uint8_t>(ids.class_code >> 8);
  config_[kClassCodeOffset + 2] = static_cast<uint8_t>(ids.class_code >> 16);
  config_[kHeaderTypeOffset] = 0;  // type 0, single function
  set_config_u16(kSubsystemVendorIdOffset, ids.subsystem_vendor_id);
  set_config_u16(kSubsystemIdOffset, ids.subsystem_id);
  config_[kInterruptPinOffset] = ids.interrupt_pin;

  set_mask(kCommandOffset, 2, kCommandWritable);
  set_mask(0x0c, 2, 0xffff);  // cache line size, latency timer
  set_mask(kInterruptLineOffset, 1, 0xff);
}

uint16_t PciDevice::config_u16(uint32_t offset) const {
  return static_cast<uint16_t>(config_[offset] | config_[offset + 1] << 8);
}

uint32_t PciDevice::config_u32(uint32_t offset) const {
  return uint32_t{config_u16(offset)} | uint32_t{config_u16(offset + 2)} << 16;
}

void PciDevice::set_config_u16(uint32_t offset, uint16_t value) {
  config_[offset] = static_cast<uint8_t>(value);
  config_[offset + 1] = static_cast<uint8_t>(value >> 8);
}

void PciDevice::set_config_u32(uint32_t offset, uint32_t value) {
  set_config_u16(offset, static_cast<uint16_t>(value));
  set_config_u16(offset + 2, static_cast<uint16_t>(value >> 16));
}

void PciDevice::set_mask(uint32_t offset, uint32_t length_bytes, uint64_t mask) {
  for (uint32_t i = 0; i < length_bytes; ++i) writable_[offset + i] = static_cast<uint8_t>(mask >> (8 * i));
}

void PciDevice::read_config(uint32_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(config_mutex_);
  if (offset < kConfigSpaceSize && !data.empty()) {
    config_before_read(offset, static_cast<uint32_t>(std::min<uint64_t>(data.size(), kConfigSpaceSize - offset)));
  }
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    data[i] = at < kConfigSpaceSize ? config_[at] : 0xff;
  }
}

void PciDevice::write_config(uint32_t offset, std::span<const uint8_t> data) {
  if (offset >= kConfigSpaceSize || data.empty()) return;
  const uint32_t length = static_cast<uint32_t>(std::min<uint64_t>(data.size(), kConfigSpaceSize - offset));
  std::lock_guard lock(config_mutex_);
  for (uint32_t i = 0; i < length; ++i) {
    const uint8_t mask = writable_[offset + i];
    config_[offset + i] = static_cast<uint8_t>((config_[offset + i] & ~mask) | (data[i] & mask));
  }
  // BARs touched by this write: report moves (not sizing probes).
  const uint32_t bar_end = kBar0Offset + 4 * kBarCount;
  if (offset < bar_end && offset + length > kBar0Offset) {
    for (int index = 0; index < kBarCount; ++index) {
      const uint32_t reg = kBar0Offset + 4 * static_cast<uint32_t>(index);
      int owner = index;
      if (bar_upper_half_[static_cast<size_t>(index)]) owner = index - 1;
      if (bars_[static_cast<size_t>(owner)].size == 0) continue;
      if (offset >= reg + 4 || offset + length <= reg) continue;
      if (bar_is_sizing_probe(owner)) continue;
      const uint64_t address = bar_address_locked(owner);
      uint64_t& reported = reported_address_[static_cast<size_t>(owner)];
      if (address != reported) {
        const uint64_t old = reported;
        reported = address;
        if (bar_hook_) bar_hook_(owner, old, address);
      }
    }
  }
  config_written(offset, length);
}

void PciDevice::add_bar(int index, const PciBar& bar) {
  const bool wide = bar.kind == PciBarKind::kMemory64;
  if (index < 0 || index >= kBarCount || (wide && index + 1 >= kBarCount)) {
    throw Error("PCI BAR index " + std::to_string(index) + " is out of range");
  }
  const uint64_t min_size = bar.kind == PciBarKind::kIo ? 4 : 16;
  if (!std::has_single_bit(bar.size) || bar.size < min_size ||
      (!wide && bar.size > (uint64_t{1} << 31))) {
    throw Error("PCI BAR " + std::to_string(index) + " has an invalid size " + std::to_string(bar.size));
  }
  const auto i = static_cast<size_t>(index);
  auto taken = [&](size_t k) { return bars_[k].size != 0 || bar_upper_half_[k]; };
  if (taken(i) || (wide && taken(i + 1))) throw Error("PCI BAR " + std::to_string(index) + " is already in use");

  std::lock_guard lock(config_mutex_);
  bars_[i] = bar;
  const uint32_t reg = kBar0Offset + 4 * static_cast<uint32_t>(index);
  uint32_t type_bits = 0;
  uint64_t address_mask = ~(bar.size - 1);
  switch (bar.kind) {
    case PciBarKind::kIo:
      type_bits = 1;
      address_mask &= 0xfffffffcULL;
      break;
    case PciBarKind::kMemory32:
      address_mask &= 0xfffffff0ULL;
      break;
    case PciBarKind::kMemory64:
      type_bits = 0x4;
      address_mask &= ~uint64_t{0xf};
      break;
  }
  if (bar.prefetchable && bar.kind != PciBarKind::kIo) type_bits |= 0x8;
  set_config_u32(reg, type_bits);
  set_mask(reg, 4, address_mask & 0xffffffff);
  if (wide) {
    bar_upper_half_[i + 1] = true;
    set_config_u32(reg + 4, 0);
    set_mask(reg + 4, 4, address_mask >> 32);
  }
}

uint8_t PciDevice::add_capability(uint8_t id, std::span<const uint8_t> body, std::span<const uint8_t> writable) {
  if (!writable.empty() && writable.size() != body.size()) throw Error("PCI capability write mask has the wrong length");
  const uint64_t length = 2 + body.size();
  if (next_capability_offset_ + length > kConfigSpaceSize) throw Error("PCI configuration space has no room for a capability");
  std::lock_guard lock(config_mutex_);
  const auto offset = static_cast<uint8_t>(next_capability_offset_);
  config_[offset] = id;
  config_[offset + 1] = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    config_[offset + 2 + i] = body[i];
    writable_[offset + 2 + i] = writable.empty() ? 0 : writable[i];
  }
  if (last_capability_ == 0) {
    config_[kCapabilityPointerOffset] = offset;
  } else {
    config_[last_capability_ + 1u] = offset;
  }
  last_capability_ = offset;
  set_config_u16(kStatusOffset, static_cast<uint16_t>(config_u16(kStatusOffset) | kStatusCapabilityList));
  next_capability_offset_ = (next_capability_offset_ + static_cast<uint32_t>(length) + 3) & ~3u;
  return offset;
}

void PciDevice::set_bar_hook(BarHook hook) {
  std::lock_guard lock(config_mutex_);
  bar_hook_ = std::move(hook);
}

uint64_t PciDevice::bar_address_locked(int index) const {
  const auto i = static_cast<size_t>(index);
  const PciBar& bar = bars_.at(i);
  if (bar.size == 0) return 0;
  const uint32_t reg = kBar0Offset + 4 * static_cast<uint32_t>(index);
  const uint32_t low = config_u32(reg);
  switch (bar.kind) {
    case PciBarKind::kIo:
      return low & ~uint32_t{3};
    case PciBarKind::kMemory32:
      return low & ~uint32_t{0xf};
    case PciBarKind::kMemory64:
      return (uint64_t{config_u32(reg + 4)} << 32) | (low & ~uint32_t{0xf});
  }
  return 0;
}

bool PciDevice::bar_is_sizing_probe(int index) const {
  // A register whose every writable bit is set holds the size mask a sizing write leaves.
  auto all_set = [&](uint32_t reg) {
    uint32_t mask = 0;
    for (uint32_t k = 0; k < 4; ++k) mask |= uint32_t{writable_[reg + k]} << (8 * k);
    return mask != 0 && (config_u32(reg) & mask) == mask;
  };
  const uint32_t reg = kBar0Offset + 4 * static_cast<uint32_t>(index);
  if (all_set(reg)) return true;
  // The high dword of a 64-bit BAR: all ones is a probe (no guest maps at 2^64 - 4 GiB).
  return bars_[static_cast<size_t>(index)].kind == PciBarKind::kMemory64 && config_u32(reg + 4) == 0xffffffff;
}

uint64_t PciDevice::bar_address(int index) const {
  std::lock_guard lock(config_mutex_);
  return bar_address_locked(index);
}

void PciDevice::set_bar_address(int index, uint64_t address) {
  std::lock_guard lock(config_mutex_);
  const auto i = static_cast<size_t>(index);
  const PciBar& bar = bars_.at(i);
  if (bar.size == 0) throw Error("PCI BAR " + std::to_string(index) + " does not exist");
  if (address & (bar.size - 1)) throw Error("PCI BAR address is not aligned to the BAR's size");
  if (bar.kind != PciBarKind::kMemory64 && address > 0xffffffff) throw Error("PCI BAR address does not fit 32 bits");
  const uint32_t reg = kBar0Offset + 4 * static_cast<uint32_t>(index);
  const uint32_t type_bits = config_u32(reg) & (bar.kind == PciBarKind::kIo ? 0x3u : 0xfu);
  set_config_u32(reg, static_cast<uint32_t>(address) | type_bits);
  if (bar.kind == PciBarKind::kMemory64) set_config_u32(reg + 4, static_cast<uint32_t>(address >> 32));
  reported_address_[i] = address;
}

uint16_t PciDevice::command() const {
  std::lock_guard lock(config_mutex_);
  return config_u16(kCommandOffset);
}

uint8_t PciDevice::interrupt_line() const {
  std::lock_guard lock(config_mutex_);
  return config_[kInterruptLineOffset];
}

nlohmann::json PciDevice::save_state() const {
  std::lock_guard lock(config_mutex_);
  return {{"config", snapshot::bytes_to_hex(config_)}};
}

PciDevice::ConfigImage PciDevice::checked_config_state(const nlohmann::json& state, const std::string& what) const {
  const std::vector<uint8_t> bytes = snapshot::state_bytes(state, "config", what, kConfigSpaceSize);
  ConfigImage image{};
  std::copy(bytes.begin(), bytes.end(), image.begin());
  auto u16_at = [&](uint32_t offset) { return static_cast<uint32_t>(image[offset] | image[offset + 1] << 8); };
  const uint32_t class_code = image[kClassCodeOffset] | image[kClassCodeOffset + 1] << 8 | image[kClassCodeOffset + 2] << 16;
  struct IdField {
    const char* name;
    uint32_t saved, ours;
    int digits;
  };
  const IdField id_fields[] = {
      {"vendor id", u16_at(kVendorIdOffset), ids_.vendor_id, 4},
      {"device id", u16_at(kDeviceIdOffset), ids_.device_id, 4},
      {"class code", class_code, ids_.class_code, 6},
      {"subsystem vendor id", u16_at(kSubsystemVendorIdOffset), ids_.subsystem_vendor_id, 4},
      {"subsystem id", u16_at(kSubsystemIdOffset), ids_.subsystem_id, 4},
  };
  for (const auto& field : id_fields) {
    if (field.saved != field.ours)
      throw snapshot::StateError("saved state of " + what + ": 'config' is of another device (" + field.name + " " +
                                 hex_value(field.saved, field.digits) + ", this device's is " +
                                 hex_value(field.ours, field.digits) + ")");
  }
  std::lock_guard lock(config_mutex_);
  for (uint32_t offset = 0; offset < kConfigSpaceSize; ++offset) {
    if ((image[offset] ^ config_[offset]) & ~writable_[offset])
      throw snapshot::StateError("saved state of " + what + ": 'config' byte 0x" + hex_value(offset, 2) +
                                 " differs from this device's in read-only bits (another layout)");
  }
  return image;
}

void PciDevice::apply_config_state(const ConfigImage& image) {
  std::lock_guard lock(config_mutex_);
  config_ = image;
  // A BAR caught in the middle of sizing has reported nothing yet: the guest's next write
  // (its address) is reported as a move from 0.
  for (int index = 0; index < kBarCount; ++index) {
    const auto i = static_cast<size_t>(index);
    reported_address_[i] = bars_[i].size == 0 || bar_is_sizing_probe(index) ? 0 : bar_address_locked(index);
  }
}

void PciDevice::load_state(const nlohmann::json& state, const std::string& what) {
  apply_config_state(checked_config_state(state, what));
}

}  // namespace kdom::devices::pci
