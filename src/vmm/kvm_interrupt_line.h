// An InterruptLine that drives one of the in-kernel irqchip's GSIs with KVM_IRQ_LINE.
#pragma once

#include <cstdint>

#include "devices/interrupt_line.h"
#include "kvm/vm.h"

namespace kdom::vmm {

class KvmInterruptLine : public devices::InterruptLine {
 public:
  KvmInterruptLine(kvm::Vm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
  void set_level(bool asserted) override { vm_.set_irq_line(gsi_, asserted); }

 private:
  kvm::Vm& vm_;
  uint32_t gsi_;
};

}  // namespace kdom::vmm
