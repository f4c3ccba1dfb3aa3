// GSI routes for an x86 VM with the in-kernel irqchip: the routes KVM sets up by default
// (GSIs 0-15 to the PIC and GSIs 0-23 to IOAPIC pins), which any routing table kdom installs
// must keep, and MSI routes for devices' MSI-X vectors.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace kdom::x86 {

constexpr uint32_t kIoApicPins = 24;
constexpr uint32_t kPicIrqs = 16;
// The first GSI free for MSI routes.
constexpr uint32_t kFirstMsiGsi = kIoApicPins;

std::vector<kvm_irq_routing_entry> default_irqchip_routes();
kvm_irq_routing_entry msi_route(uint32_t gsi, uint64_t address, uint32_t data);

}  // namespace kdom::x86
