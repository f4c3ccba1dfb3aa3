// MsixTable: MSI-X vector table, pending bits and masking.
#include "devices/pci/msix.h"

#include <string>

#include "base/error.h"
#include "snapshot/state_json.h"

namespace kdom::devices::pci {

MsixTable::MsixTable(uint16_t vectors, std::shared_ptr<MsixInterrupts> interrupts)
    : interrupts_(std::move(interrupts)), entries_(vectors) {
  if (vectors == 0 || vectors > kMsixMaxVectors) throw Error("invalid MSI-X vector count " + std::to_string(vectors));
}

std::vector<uint8_t> MsixTable::capability_body(uint8_t table_bar, uint32_t table_offset, uint8_t pba_bar,
                                                uint32_t pba_offset) const {
  if ((table_offset & 7) || (pba_offset & 7) || table_bar > 5 || pba_bar > 5) {
    throw Error("MSI-X table and PBA need 8-byte aligned offsets in BARs 0-5");
  }
  const uint16_t control = static_cast<uint16_t>(size() - 1);
  const uint32_t table = table_offset | table_bar;
  const uint32_t pba = pba_offset | pba_bar;
  return {static_cast<uint8_t>(control),       static_cast<uint8_t>(control >> 8),
          static_cast<uint8_t>(table),         static_cast<uint8_t>(table >> 8),
          static_cast<uint8_t>(table >> 16),   static_cast<uint8_t>(table >> 24),
          static_cast<uint8_t>(pba),           static_cast<uint8_t>(pba >> 8),
          static_cast<uint8_t>(pba >> 16),     static_cast<uint8_t>(pba >> 24)};
}

std::vector<uint8_t> MsixTable::capability_writable() {
  std::vector<uint8_t> mask(kMsixCapabilityBodySize, 0);
  mask[1] = static_cast<uint8_t>((kMsixControlEnable | kMsixControlFunctionMask) >> 8);
  return mask;
}

uint8_t MsixTable::entry_byte(const Entry& entry, uint32_t at) {
  const uint32_t words[4] = {entry.address_low, entry.address_high, entry.data, entry.control};
  return static_cast<uint8_t>(words[at / 4] >> (8 * (at % 4)));
}

void MsixTable::set_entry_byte(Entry& entry, uint32_t at, uint8_t value) {
  uint32_t* words[4] = {&entry.address_low, &entry.address_high, &entry.data, &entry.control};
  const uint32_t shift = 8 * (at % 4);
  uint32_t& word = *words[at / 4];
  word = (word & ~(uint32_t{0xff} << shift)) | uint32_t{value} << shift;
}

void MsixTable::read_table(uint64_t offset, std::span<uint8_t> data) const {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    data[i] = at < table_bytes() ? entry_byte(entries_[at / kMsixEntrySize], at % kMsixEntrySize) : 0;
  }
}

void MsixTable::write_table(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size();) {
    const uint64_t at = offset + i;
    if (at >= table_bytes()) break;
    const auto vector = static_cast<uint16_t>(at / kMsixEntrySize);
    Entry& entry = entries_[vector];
    // The bytes of this write that fall in this entry.
    for (; i < data.size() && (offset + i) / kMsixEntrySize == vector && offset + i < table_bytes(); ++i) {
      const auto byte_at = static_cast<uint32_t>((offset + i) % kMsixEntrySize);
      // Only the mask bit of vector control is writable.
      uint8_t value = data[i];
      if (byte_at >= 12) value = byte_at == 12 ? static_cast<uint8_t>(value & kMsixVectorControlMask) : 0;
      set_entry_byte(entry, byte_at, value);
    }
    route_locked(vector);
    if (entry.pending && enabled_ && !masked_locked(entry)) {
      entry.pending = false;
      if (interrupts_) interrupts_->fire(vector, message_of(entry));
    }
  }
}

void MsixTable::read_pba(uint64_t offset, std::span<uint8_t> data) const {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t bit = (offset + i) * 8;
    uint8_t value = 0;
    for (uint32_t b = 0; b < 8; ++b) {
      if (bit + b < entries_.size() && entries_[bit + b].pending) value = static_cast<uint8_t>(value | 1u << b);
    }
    data[i] = value;
  }
}

void MsixTable::set_control(uint16_t message_control) {
  std::lock_guard lock(mutex_);
  enabled_ = (message_control & kMsixControlEnable) != 0;
  function_masked_ = (message_control & kMsixControlFunctionMask) != 0;
  deliver_unmasked_pending_locked();
}

void MsixTable::route_locked(uint16_t vector) {
  Entry& entry = entries_[vector];
  if (!enabled_ || masked_locked(entry)) return;
  const MsixMessage message = message_of(entry);
  if (entry.routed == message) return;
  if (interrupts_) interrupts_->update(vector, message);
  entry.routed = message;
}

void MsixTable::deliver_unmasked_pending_locked() {
  if (!enabled_ || function_masked_) return;
  for (size_t v = 0; v < entries_.size(); ++v) {
    route_locked(static_cast<uint16_t>(v));
    Entry& entry = entries_[v];
    if (entry.pending && !masked_locked(entry)) {
      entry.pending = false;
      if (interrupts_) interrupts_->fire(static_cast<uint16_t>(v), message_of(entry));
    }
  }
}

bool MsixTable::signal(uint16_t vector) {
  std::lock_guard lock(mutex_);
  if (!enabled_) return false;
  if (vector >= entries_.size()) return true;
  Entry& entry = entries_[vector];
  if (masked_locked(entry)) {
    entry.pending = true;
  } else if (interrupts_) {
    interrupts_->fire(vector, message_of(entry));
  }
  return true;
}

bool MsixTable::enabled() const {
  std::lock_guard lock(mutex_);
  return enabled_;
}

bool MsixTable::masked(uint16_t vector) const {
  std::lock_guard lock(mutex_);
  return vector >= entries_.size() || masked_locked(entries_[vector]);
}

bool MsixTable::pending(uint16_t vector) const {
  std::lock_guard lock(mutex_);
  return vector < entries_.size() && entries_[vector].pending;
}

MsixMessage MsixTable::message(uint16_t vector) const {
  std::lock_guard lock(mutex_);
  if (vector >= entries_.size()) return {};
  return message_of(entries_[vector]);
}

nlohmann::json MsixTable::save_state() const {
  std::lock_guard lock(mutex_);
  nlohmann::json entries = nlohmann::json::array();
  for (const Entry& entry : entries_) {
    entries.push_back({{"address", message_of(entry).address},
                       {"data", entry.data},
                       {"masked", (entry.control & kMsixVectorControlMask) != 0},
                       {"pending", entry.pending}});
  }
  return {{"enabled", enabled_}, {"function_masked", function_masked_}, {"entries", std::move(entries)}};
}

MsixTable::SavedState MsixTable::checked_state(const nlohmann::json& state, const std::string& what) const {
  SavedState saved;
  saved.enabled = snapshot::state_bool(state, "enabled", what);
  saved.function_masked = snapshot::state_bool(state, "function_masked", what);
  const nlohmann::json& entries = snapshot::state_array(state, "entries", what);
  if (entries.size() != entries_.size())
    throw snapshot::StateError("saved state of " + what + ": 'entries' has " + std::to_string(entries.size()) +
                               " vectors, this table " + std::to_string(entries_.size()));
  for (size_t v = 0; v < entries.size(); ++v) {
    const std::string where = what + " MSI-X vector " + std::to_string(v);
    SavedEntry entry;
    entry.message.address = snapshot::state_u64(entries[v], "address", where);
    entry.message.data = static_cast<uint32_t>(snapshot::state_u64(entries[v], "data", where, UINT32_MAX));
    entry.masked = snapshot::state_bool(entries[v], "masked", where);
    entry.pending = snapshot::state_bool(entries[v], "pending", where);
    // Delivery clears a pending bit the moment a vector can deliver, under the same lock.
    if (entry.pending && saved.enabled && !saved.function_masked && !entry.masked)
      throw snapshot::StateError("saved state of " + where + ": 'pending' is set on a vector that can deliver");
    saved.entries.push_back(entry);
  }
  return saved;
}

void MsixTable::apply_state(const SavedState& state) {
  std::lock_guard lock(mutex_);
  enabled_ = state.enabled;
  function_masked_ = state.function_masked;
  for (size_t v = 0; v < entries_.size(); ++v) {
    const SavedEntry& saved = state.entries.at(v);
    Entry& entry = entries_[v];
    entry.address_low = static_cast<uint32_t>(saved.message.address);
    entry.address_high = static_cast<uint32_t>(saved.message.address >> 32);
    entry.data = saved.message.data;
    entry.control = saved.masked ? kMsixVectorControlMask : 0;
    entry.pending = saved.pending;
    entry.routed.reset();  // the backend is new: every deliverable vector is routed again
    route_locked(static_cast<uint16_t>(v));
  }
}

void MsixTable::load_state(const nlohmann::json& state, const std::string& what) {
  apply_state(checked_state(state, what));
}

}  // namespace kdom::devices::pci
