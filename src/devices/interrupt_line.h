// InterruptLine: how a device raises its interrupt, without knowing how the VMM delivers it
// (KVM_IRQ_LINE, irqfd, or a fake in unit tests).
#pragma once

namespace kdom::devices {

class InterruptLine {
 public:
  virtual ~InterruptLine() = default;
  virtual void set_level(bool asserted) = 0;
};

}  // namespace kdom::devices
