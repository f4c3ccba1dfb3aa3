// PciHotplugController: the registers behind the DSDT's ACPI PCI hot-plug methods
// (arch/x86/acpi_tables.h), three 32-bit registers of one bit per slot of bus 0:
//   +0 PCIU  read: the slots that got a device since the guest last read it (reading clears)
//   +4 PCID  read: the slots whose device the host asks the guest to let go (reading clears)
//   +8 B0EJ  write: the slots the guest has let go (its _EJ0 ran): their devices may leave
// Each announcement is one edge on the Generic Event Device's hot-plug interrupt, which makes
// the guest read PCIU and PCID and notify its slots. Knows nothing of what is in the slots.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "devices/bus.h"
#include "devices/interrupt_line.h"

namespace kdom::devices::pci {

class PciHotplugController : public BusDevice {
 public:
  static constexpr uint64_t kLength = 12;
  static constexpr uint64_t kAddedOffset = 0;
  static constexpr uint64_t kRemovalOffset = 4;
  static constexpr uint64_t kEjectOffset = 8;
  // Called in the vCPU thread that wrote B0EJ, once per slot (1-31) it names, outside the
  // controller's lock.
  using EjectHandler = std::function<void(int slot)>;

  PciHotplugController(std::shared_ptr<InterruptLine> line, EjectHandler on_eject)
      : line_(std::move(line)), on_eject_(std::move(on_eject)) {}

  // Tells the guest that `slot` (1-31) has a new device; throws Error for another slot.
  void announce_added(int slot);
  // Asks the guest to let go of the device in `slot` (1-31); throws Error for another slot.
  void request_removal(int slot);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Save and restore: {"added": PCIU, "removals": PCID}, the bits the guest has not read yet.
  // load_state refuses (snapshot::StateError, nothing changed) a bit outside slots 1-31. It
  // raises no interrupt: the edge the guest has not taken yet is the interrupt controller's
  // saved state.
  nlohmann::json save_state() const;
  void load_state(const nlohmann::json& state);

 private:
  void raise(uint32_t& bits, int slot);

  std::shared_ptr<InterruptLine> line_;
  EjectHandler on_eject_;
  mutable std::mutex mutex_;
  uint32_t added_ = 0;     // PCIU
  uint32_t removals_ = 0;  // PCID
};

}  // namespace kdom::devices::pci
