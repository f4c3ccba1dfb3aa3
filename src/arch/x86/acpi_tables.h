// ACPI tables for a hardware-reduced x86 guest: RSDP, XSDT, FADT (sleep control register for
// poweroff, reset register), DSDT (\_S5; the PCI host bridge and its windows; COM1, the RTC
// and pvpanic with their ports and interrupts; a power button, pressed through a Generic Event
// Device's interrupt; ACPI PCI hot-plug slots on bus 0, signalled through the same device) and MADT (every vCPU's local APIC and the IOAPIC). The MADT is how a
// guest finds all its vCPUs. A hardware-reduced machine has no implied legacy ISA devices, so
// every device with an interrupt must be in the DSDT for the guest to route that interrupt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kdom::x86 {

struct AcpiConfig {
  uint32_t vcpu_count = 1;
  uint16_t sleep_control_port = 0x600;
  uint16_t sleep_status_port = 0x601;
  uint16_t reset_port = 0x64;
  uint8_t reset_value = 0xfe;
  uint16_t pvpanic_port = 0x505;
  uint16_t com1_port = 0x3f8;
  uint8_t com1_irq = 4;
  uint16_t rtc_port = 0x70;
  uint8_t rtc_irq = 8;
  // An edge on this GSI presses the power button: the Generic Event Device's _EVT notifies
  // \_SB.PWRB (0x80, "pressed"), and the guest's OS decides what to do (a clean poweroff).
  uint32_t power_button_gsi = 23;
  // PCI hot-plug (ACPI, as Linux's acpiphp drives it): each slot 1-31 of bus 0 is a device
  // with _ADR, _SUN and _EJ0. An edge on this GSI makes the GED run \_SB.PCI0.PCNT, which reads
  // the hot-plug registers at this port (devices::pci::PciHotplugController) and notifies each
  // slot with a device added (1, "device check") or a removal asked for (3, "eject request");
  // the guest's _EJ0 on a slot writes its bit to the eject register when it has let go.
  uint32_t pci_hotplug_gsi = 22;
  uint16_t pci_hotplug_port = 0xae00;
  // The PCI host bridge's memory window (BARs are assigned inside it).
  uint32_t pci_mmio_first = 0xc0000000;
  uint32_t pci_mmio_last = 0xfebfffff;
};

// The SLP_TYP value the DSDT's \_S5 package gives; the sleep control register sees it.
constexpr uint8_t kAcpiS5SleepType = 5;

struct AcpiTables {
  uint64_t address = 0;       // guest-physical address of `bytes` (the RSDP is first)
  uint64_t rsdp_address = 0;
  std::vector<uint8_t> bytes;
};

AcpiTables build_acpi_tables(const AcpiConfig& config, uint64_t address);

// Sum of bytes, for checksum tests.
uint8_t acpi_checksum(const uint8_t* data, size_t length);

}  // namespace kdom::x86
