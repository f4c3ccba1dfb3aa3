// PciDevice: one PCI function's 256-byte type-0 configuration space (PCI Local Bus spec 3.0,
// chapter 6). Every byte has a write mask, so read-only fields (ids, class, status, capability
// bodies) survive guest writes; BARs follow the sizing protocol (write all-ones, read back the
// size mask) through those masks. Devices derive from it, add BARs and capabilities when built,
// and learn of guest writes through config_written() and the BAR hook.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

namespace kdom::devices::pci {

inline constexpr uint32_t kConfigSpaceSize = 256;
inline constexpr int kBarCount = 6;

// Standard header offsets.
inline constexpr uint32_t kVendorIdOffset = 0x00;
inline constexpr uint32_t kDeviceIdOffset = 0x02;
inline constexpr uint32_t kCommandOffset = 0x04;
inline constexpr uint32_t kStatusOffset = 0x06;
inline constexpr uint32_t kRevisionOffset = 0x08;
inline constexpr uint32_t kClassCodeOffset = 0x09;  // prog-if, subclass, base class
inline constexpr uint32_t kHeaderTypeOffset = 0x0e;
inline constexpr uint32_t kBar0Offset = 0x10;
inline constexpr uint32_t kSubsystemVendorIdOffset = 0x2c;
inline constexpr uint32_t kSubsystemIdOffset = 0x2e;
inline constexpr uint32_t kCapabilityPointerOffset = 0x34;
inline constexpr uint32_t kInterruptLineOffset = 0x3c;
inline constexpr uint32_t kInterruptPinOffset = 0x3d;
inline constexpr uint32_t kFirstCapabilityOffset = 0x40;

inline constexpr uint16_t kCommandIoSpace = 1 << 0;
inline constexpr uint16_t kCommandMemorySpace = 1 << 1;
inline constexpr uint16_t kCommandBusMaster = 1 << 2;
inline constexpr uint16_t kCommandInterruptDisable = 1 << 10;
inline constexpr uint16_t kStatusCapabilityList = 1 << 4;

// Capability ids.
inline constexpr uint8_t kCapabilityIdMsix = 0x11;
inline constexpr uint8_t kCapabilityIdVendor = 0x09;

struct PciIds {
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint8_t revision = 0;
  uint32_t class_code = 0;  // 24 bits: base class << 16 | subclass << 8 | prog-if
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
  uint8_t interrupt_pin = 0;  // 0: none, 1..4: INTA#..INTD#
};

enum class PciBarKind { kMemory32, kMemory64, kIo };

struct PciBar {
  PciBarKind kind = PciBarKind::kMemory32;
  uint64_t size = 0;  // 0: no BAR at this index
  bool prefetchable = false;
};

class PciDevice {
 public:
  // Called, with the device's config lock held, when a guest write moved BAR `index` (for a
  // 64-bit BAR, its low register's index): the owner moves the BAR's region. Not called for the
  // all-ones sizing probe, nor for set_bar_address. A 64-bit BAR reprogrammed dword by dword
  // reports each step. Whether the region decodes at all is command() & kCommandMemorySpace
  // (or kCommandIoSpace).
  using BarHook = std::function<void(int index, uint64_t old_address, uint64_t new_address)>;

  explicit PciDevice(const PciIds& ids);
  virtual ~PciDevice() = default;
  PciDevice(const PciDevice&) = delete;
  PciDevice& operator=(const PciDevice&) = delete;

  // Guest config accesses: `offset` + size within 256 bytes (the caller checks), any size.
  void read_config(uint32_t offset, std::span<uint8_t> data);
  void write_config(uint32_t offset, std::span<const uint8_t> data);

  // Building the device (before the guest runs).
  // Declares BAR `index` (a 64-bit memory BAR takes index and index + 1). `size` must be a power
  // of two, at least 16 for memory and 4 for I/O. Throws Error otherwise or when taken.
  void add_bar(int index, const PciBar& bar);
  // Appends a capability: `body` is everything after the id and next-pointer bytes, and
  // `writable` (empty, or as long as body) gives the guest-writable bits of each body byte.
  // Links it at the end of the list, sets the status capability bit and returns its offset.
  // Throws Error when config space is full.
  uint8_t add_capability(uint8_t id, std::span<const uint8_t> body, std::span<const uint8_t> writable = {});
  void set_bar_hook(BarHook hook);

  // The BAR's current address (its decoded base), and its declaration.
  uint64_t bar_address(int index) const;
  const PciBar& bar(int index) const { return bars_.at(static_cast<size_t>(index)); }
  // Programs a BAR as firmware would, without calling the hook.
  void set_bar_address(int index, uint64_t address);

  uint16_t command() const;
  uint8_t interrupt_line() const;
  const PciIds& ids() const { return ids_; }

  // Save and restore: {"config": the 256 bytes of config space as hex}. The BARs' addresses,
  // the command register and every capability's writable bytes (MSI-X control included) are
  // in it. load_state refuses (snapshot::StateError naming `what` and the field, nothing
  // changed) a state of another device (vendor, device, class or subsystem ids) or one whose
  // read-only bits differ from this device's (another layout of capabilities or BARs). The
  // BARs then decode at the loaded addresses; the BAR hook is not called (the owner
  // re-registers what it keeps at BAR addresses itself).
  nlohmann::json save_state() const;
  void load_state(const nlohmann::json& state, const std::string& what);

 protected:
  using ConfigImage = std::array<uint8_t, kConfigSpaceSize>;
  // load_state in two steps, for a derived class that checks all of its own state before it
  // changes any: the checked image, then applying it (which cannot fail).
  ConfigImage checked_config_state(const nlohmann::json& state, const std::string& what) const;
  void apply_config_state(const ConfigImage& image);

  // Called after each guest write, with the config lock held, for the written range.
  virtual void config_written(uint32_t /*offset*/, uint32_t /*length*/) {}
  // Called before each guest read, with the config lock held, so a derived class can fill in
  // registers whose value comes from elsewhere.
  virtual void config_before_read(uint32_t /*offset*/, uint32_t /*length*/) {}

  // For derived classes, with the lock held (in config_written) or while building.
  uint8_t config_u8(uint32_t offset) const { return config_[offset]; }
  uint16_t config_u16(uint32_t offset) const;
  uint32_t config_u32(uint32_t offset) const;
  void set_config_u16(uint32_t offset, uint16_t value);
  void set_config_u32(uint32_t offset, uint32_t value);

  mutable std::mutex config_mutex_;

 private:
  uint64_t bar_address_locked(int index) const;
  bool bar_is_sizing_probe(int index) const;
  void set_mask(uint32_t offset, uint32_t length_bytes, uint64_t mask);

  PciIds ids_;
  std::array<uint8_t, kConfigSpaceSize> config_{};
  std::array<uint8_t, kConfigSpaceSize> writable_{};
  std::array<PciBar, kBarCount> bars_{};
  std::array<bool, kBarCount> bar_upper_half_{};  // register holds a 64-bit BAR's high dword
  std::array<uint64_t, kBarCount> reported_address_{};
  uint8_t last_capability_ = 0;
  uint32_t next_capability_offset_ = kFirstCapabilityOffset;
  BarHook bar_hook_;
};

}  // namespace kdom::devices::pci
