// The guest's ACPI power button: a press is one edge on the interrupt line of the Generic
// Event Device the DSDT describes (arch/x86/acpi_tables.h), whose _EVT method notifies the
// button device; the guest's OS then does what a press means to it (usually a clean poweroff).
#pragma once

#include <memory>

#include "devices/interrupt_line.h"

namespace kdom::devices {

class PowerButton {
 public:
  explicit PowerButton(std::shared_ptr<InterruptLine> line) : line_(std::move(line)) {}

  void press() {
    line_->set_level(true);
    line_->set_level(false);
  }

 private:
  std::shared_ptr<InterruptLine> line_;
};

}  // namespace kdom::devices
