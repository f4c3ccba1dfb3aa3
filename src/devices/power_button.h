// The guest's ACPI power button: a press is one edge on the interrupt line of the Generic
// Event Device the DSDT describes (arch/x86/acpi_tables.h), whose _EVT method notifies the
// button device; the guest's OS then does what a press means to it (usually a clean poweroff).
#pragma once

#include <memory>

#include <nlohmann/json.hpp>

#include "devices/interrupt_line.h"
#include "snapshot/state_json.h"

namespace kdom::devices {

class PowerButton {
 public:
  explicit PowerButton(std::shared_ptr<InterruptLine> line) : line_(std::move(line)) {}

  void press() {
    line_->set_level(true);
    line_->set_level(false);
  }

  // Save and restore: a press is one edge and leaves the line low, so there is nothing to
  // keep; the state is an empty object, and anything else is refused.
  nlohmann::json save_state() const { return nlohmann::json::object(); }
  void load_state(const nlohmann::json& state) const {
    if (!state.is_object() || !state.empty())
      throw snapshot::StateError("saved state of the power button is not an empty JSON object");
  }

 private:
  std::shared_ptr<InterruptLine> line_;
};

}  // namespace kdom::devices
