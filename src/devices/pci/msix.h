// MSI-X (PCI Local Bus spec 3.0, section 6.8.2): the capability's layout, the vector table and
// the pending bit array a device exposes in one of its BARs, and the masking rules: a vector
// signalled while masked (by its entry or by the function mask) becomes pending and is
// delivered when unmasked. Delivery goes through MsixInterrupts, which the VMM backs with KVM
// GSI routes and irqfds (vmm/msi_router.h) and tests with a fake.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kdom::devices::pci {

struct MsixMessage {
  uint64_t address = 0;
  uint32_t data = 0;
  bool operator==(const MsixMessage&) const = default;
};

class MsixInterrupts {
 public:
  virtual ~MsixInterrupts() = default;
  // `vector` will deliver `message` from now on (a backend reprograms its route). Called only
  // while the vector can deliver (MSI-X enabled, vector unmasked), once per new message: a
  // guest rewrites a masked entry a word at a time (Linux does), and routing each half-written
  // message would cost a routing-table install each. Called with the table's lock held; must
  // not call back into the table.
  virtual void update(uint16_t vector, const MsixMessage& message) = 0;
  // Delivers `vector` (MSI-X enabled, vector unmasked). Called with the table's lock held, from
  // any thread.
  virtual void fire(uint16_t vector, const MsixMessage& message) = 0;
};

inline constexpr uint16_t kMsixNoVector = 0xffff;
inline constexpr uint16_t kMsixMaxVectors = 2048;
inline constexpr uint32_t kMsixEntrySize = 16;
inline constexpr uint16_t kMsixControlEnable = 1 << 15;
inline constexpr uint16_t kMsixControlFunctionMask = 1 << 14;
inline constexpr uint32_t kMsixVectorControlMask = 1;
// The capability body after id and next: message control, table offset/BIR, PBA offset/BIR.
inline constexpr uint32_t kMsixCapabilityBodySize = 10;

class MsixTable {
 public:
  // Throws Error unless 1 <= vectors <= 2048. Every entry starts masked, MSI-X disabled.
  MsixTable(uint16_t vectors, std::shared_ptr<MsixInterrupts> interrupts);

  uint16_t size() const { return static_cast<uint16_t>(entries_.size()); }
  uint32_t table_bytes() const { return kMsixEntrySize * size(); }
  uint32_t pba_bytes() const { return 8 * ((size() + 63u) / 64u); }

  // The capability body (after id and next) and its guest-writable bits (enable, function mask).
  std::vector<uint8_t> capability_body(uint8_t table_bar, uint32_t table_offset, uint8_t pba_bar,
                                       uint32_t pba_offset) const;
  static std::vector<uint8_t> capability_writable();

  // Accesses at offsets within the table and the PBA; out-of-range bytes read 0 and writes to
  // them (and to the read-only PBA) are ignored.
  void read_table(uint64_t offset, std::span<uint8_t> data) const;
  void write_table(uint64_t offset, std::span<const uint8_t> data);
  void read_pba(uint64_t offset, std::span<uint8_t> data) const;

  // The capability's message control changed (enable, function mask).
  void set_control(uint16_t message_control);

  // Raises `vector`: delivered now, or left pending while masked. Returns false (and does
  // nothing) when MSI-X is disabled, so the caller may use INTx; an out-of-range vector or
  // kMsixNoVector is dropped (returns true).
  bool signal(uint16_t vector);

  bool enabled() const;
  bool masked(uint16_t vector) const;
  bool pending(uint16_t vector) const;
  MsixMessage message(uint16_t vector) const;

  // Save and restore: {"enabled", "function_masked", "entries": [{"address", "data", "masked",
  // "pending"}, one per vector]}. load_state refuses (snapshot::StateError naming `what` and
  // the field, nothing changed) a state of another table size, a field out of range, or a
  // vector pending while it could deliver (delivery would have cleared it); then every vector
  // that can deliver is given to MsixInterrupts::update, so the backend's routes are rebuilt.
  // The capability's message control in config space must agree (the owner checks).
  struct SavedEntry {
    MsixMessage message;
    bool masked = true;
    bool pending = false;
  };
  struct SavedState {
    bool enabled = false;
    bool function_masked = false;
    std::vector<SavedEntry> entries;
  };
  nlohmann::json save_state() const;
  void load_state(const nlohmann::json& state, const std::string& what);
  // load_state in two steps, for an owner that checks all of its state before changing any.
  SavedState checked_state(const nlohmann::json& state, const std::string& what) const;
  void apply_state(const SavedState& state);

 private:
  struct Entry {
    uint32_t address_low = 0;
    uint32_t address_high = 0;
    uint32_t data = 0;
    uint32_t control = kMsixVectorControlMask;
    bool pending = false;
    std::optional<MsixMessage> routed;  // the message last given to update()
  };
  static MsixMessage message_of(const Entry& entry) {
    return MsixMessage{uint64_t{entry.address_high} << 32 | entry.address_low, entry.data};
  }
  static uint8_t entry_byte(const Entry& entry, uint32_t at);
  static void set_entry_byte(Entry& entry, uint32_t at, uint8_t value);
  bool masked_locked(const Entry& entry) const { return function_masked_ || (entry.control & kMsixVectorControlMask); }
  // Gives the entry's message to update() if it can deliver and its route is not that message.
  void route_locked(uint16_t vector);
  void deliver_unmasked_pending_locked();

  mutable std::mutex mutex_;
  std::shared_ptr<MsixInterrupts> interrupts_;
  std::vector<Entry> entries_;
  bool enabled_ = false;
  bool function_masked_ = false;
};

}  // namespace kdom::devices::pci
