// The i8042 keyboard controller, as far as a guest needs it: its status and command ports,
// the controller self-tests, and the reset line (command 0xFE, or clearing bit 0 of the output
// port), which is how an x86 guest asks for a reboot. No keyboard or mouse is attached.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "devices/bus.h"
#include "devices/guest_event.h"

namespace kdom::devices {

class I8042 : public BusDevice {
 public:
  // Registered at port 0x60 with length 5 (0x60 data, 0x64 status/command).
  static constexpr uint64_t kBase = 0x60;
  static constexpr uint64_t kLength = 5;

  explicit I8042(GuestEventSink events) : events_(std::move(events)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Save and restore: {"output": the byte the guest reads next or null, "pending_command":
  // the command waiting for its data byte or null, "command_byte"}. load_state checks every
  // field first (snapshot::StateError naming it, the controller unchanged).
  nlohmann::json save_state() const;
  void load_state(const nlohmann::json& state);

 private:
  void command(uint8_t value);
  void data_write(uint8_t value);

  mutable std::mutex mutex_;
  GuestEventSink events_;
  std::optional<uint8_t> output_;        // the byte the guest reads next from port 0x60
  std::optional<uint8_t> pending_command_;  // a command waiting for its data byte
  uint8_t command_byte_ = 0x61;          // translate, system flag, keyboard interrupt
};

}  // namespace kdom::devices
