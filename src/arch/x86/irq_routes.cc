// Irqchip and MSI routing entries.
#include "arch/x86/irq_routes.h"

namespace kdom::x86 {

std::vector<kvm_irq_routing_entry> default_irqchip_routes() {
  std::vector<kvm_irq_routing_entry> routes;
  for (uint32_t gsi = 0; gsi < kIoApicPins; ++gsi) {
    if (gsi < kPicIrqs) {
      kvm_irq_routing_entry pic{};
      pic.gsi = gsi;
      pic.type = KVM_IRQ_ROUTING_IRQCHIP;
      pic.u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
      pic.u.irqchip.pin = gsi % 8;
      routes.push_back(pic);
    }
    kvm_irq_routing_entry ioapic{};
    ioapic.gsi = gsi;
    ioapic.type = KVM_IRQ_ROUTING_IRQCHIP;
    ioapic.u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
    ioapic.u.irqchip.pin = gsi;
    routes.push_back(ioapic);
  }
  return routes;
}

kvm_irq_routing_entry msi_route(uint32_t gsi, uint64_t address, uint32_t data) {
  kvm_irq_routing_entry route{};
  route.gsi = gsi;
  route.type = KVM_IRQ_ROUTING_MSI;
  route.u.msi.address_lo = static_cast<uint32_t>(address);
  route.u.msi.address_hi = static_cast<uint32_t>(address >> 32);
  route.u.msi.data = data;
  return route;
}

}  // namespace kdom::x86
