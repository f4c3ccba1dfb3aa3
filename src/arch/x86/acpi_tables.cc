// ACPI table construction. Layouts follow the ACPI 6.x specification.
#include "arch/x86/acpi_tables.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <initializer_list>
#include <string_view>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"

namespace kdom::x86 {

namespace {

constexpr size_t kHeaderSize = 36;
constexpr size_t kFadtSize = 276;
constexpr uint8_t kFadtRevision = 6;
constexpr uint8_t kFadtMinorRevision = 3;
constexpr uint32_t kFadtResetRegSupported = 1u << 10;
constexpr uint32_t kFadtHardwareReduced = 1u << 20;
constexpr uint32_t kFadtPowerButtonAbsent = 1u << 4;
constexpr uint32_t kFadtSleepButtonAbsent = 1u << 5;
constexpr uint16_t kBootArchVgaAbsent = 1u << 2;
constexpr uint8_t kGasSystemIo = 1;
constexpr uint8_t kGasByteAccess = 1;
constexpr uint8_t kCmosCenturyIndex = 0x32;
constexpr uint8_t kAcpiNotifyButtonPressed = 0x80;
constexpr uint8_t kAcpiNotifyDeviceCheck = 1;
constexpr uint8_t kAcpiNotifyEjectRequest = 3;
constexpr int kFirstHotplugSlot = 1;  // slot 0 is the host bridge
constexpr int kLastHotplugSlot = 31;

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out, size_t at) : out_(out), at_(at) {}
  template <typename T>
  void put(size_t offset, T value) {
    std::memcpy(out_.data() + at_ + offset, &value, sizeof(T));
  }
  void put_text(size_t offset, std::string_view text) { std::memcpy(out_.data() + at_ + offset, text.data(), text.size()); }
  void put_gas(size_t offset, uint16_t port) {
    put<uint8_t>(offset, kGasSystemIo);
    put<uint8_t>(offset + 1, 8);  // bit width
    put<uint8_t>(offset + 2, 0);  // bit offset
    put<uint8_t>(offset + 3, kGasByteAccess);
    put<uint64_t>(offset + 4, port);
  }

 private:
  std::vector<uint8_t>& out_;
  size_t at_;
};

class TableBuilder {
 public:
  explicit TableBuilder(uint64_t base) : base_(base) {}

  // Appends a table of `length` bytes (16-byte aligned) and returns its offset.
  size_t reserve(size_t length) {
    size_t offset = (bytes_.size() + 15) & ~size_t{15};
    bytes_.resize(offset + length, 0);
    return offset;
  }
  size_t add_table(std::string_view signature, uint8_t revision, const std::vector<uint8_t>& body) {
    size_t offset = reserve(kHeaderSize + body.size());
    Writer w(bytes_, offset);
    w.put_text(0, signature);
    w.put<uint32_t>(4, static_cast<uint32_t>(kHeaderSize + body.size()));
    w.put<uint8_t>(8, revision);
    w.put_text(10, "KDOM  ");
    w.put_text(16, "KDOMVMM ");
    w.put<uint32_t>(24, 1);
    w.put_text(28, "KDOM");
    w.put<uint32_t>(32, 1);
    std::memcpy(bytes_.data() + offset + kHeaderSize, body.data(), body.size());
    bytes_[offset + 9] = static_cast<uint8_t>(-acpi_checksum(bytes_.data() + offset, kHeaderSize + body.size()));
    return offset;
  }
  uint64_t address_of(size_t offset) const { return base_ + offset; }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  uint64_t base_;
  std::vector<uint8_t> bytes_;
};

// The host bridge's _CRS: bus numbers, its config ports, the I/O ports around them and the
// MMIO window.
std::vector<uint8_t> pci_host_bridge_resources(const AcpiConfig& config) {
  using namespace aml;
  Bytes descriptors = word_bus_numbers(0, 0xff);
  const Bytes config_ports{0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08};
  for (const Bytes& part : {config_ports, word_io_window(0, 0xcf7), word_io_window(0xd00, 0xffff),
                            dword_memory_window(config.pci_mmio_first, config.pci_mmio_last)})
    descriptors.insert(descriptors.end(), part.begin(), part.end());
  return resource_template(descriptors);
}

// The slot devices of bus 0 and the method that notifies them (see AcpiConfig): the body
// that goes inside \_SB.PCI0.
std::vector<uint8_t> pci_hotplug_objects(const AcpiConfig& config) {
  using namespace aml;
  auto slot_name = [](int slot) {
    char text[5];
    std::snprintf(text, sizeof(text), "S%02X", slot);
    return std::string(text);
  };
  Bytes out = io_region("PHPR", config.pci_hotplug_port, 12);
  const Bytes fields = dword_fields("PHPR", {"PCIU", "PCID", "B0EJ"});
  out.insert(out.end(), fields.begin(), fields.end());
  Bytes check = store(name_ref("PCIU"), local(0));
  const Bytes removals = store(name_ref("PCID"), local(1));
  check.insert(check.end(), removals.begin(), removals.end());
  for (int slot = kFirstHotplugSlot; slot <= kLastHotplugSlot; ++slot) {
    const uint32_t bit = 1u << slot;
    const std::string name_text = slot_name(slot);
    Bytes slot_body = name("_ADR", integer(static_cast<uint64_t>(slot) << 16));
    for (const Bytes& part : {name("_SUN", integer(static_cast<uint64_t>(slot))),
                              method("_EJ0", 1, store(integer(bit), name_ref("B0EJ")))})
      slot_body.insert(slot_body.end(), part.begin(), part.end());
    const Bytes slot_device = device(name_text, slot_body);
    out.insert(out.end(), slot_device.begin(), slot_device.end());
    for (const Bytes& part : {if_then(bit_and(local(0), integer(bit)), notify(name_ref(name_text), kAcpiNotifyDeviceCheck)),
                              if_then(bit_and(local(1), integer(bit)), notify(name_ref(name_text), kAcpiNotifyEjectRequest))})
      check.insert(check.end(), part.begin(), part.end());
  }
  const Bytes pcnt = method("PCNT", 0, check);
  out.insert(out.end(), pcnt.begin(), pcnt.end());
  return out;
}

std::vector<uint8_t> dsdt_body(const AcpiConfig& config) {
  using namespace aml;
  auto concat = [](std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
    return out;
  };
  Bytes com1 = device("COM1", concat({name("_HID", string("PNP0501")), name("_UID", integer(1)),
                                      name("_CRS", io_port_resource(config.com1_port, 8, config.com1_irq))}));
  Bytes rtc = device("RTC_", concat({name("_HID", string("PNP0B00")),
                                     name("_CRS", io_port_resource(config.rtc_port, 2, config.rtc_irq))}));
  Bytes pvpanic = device("PEVT", concat({name("_HID", string("QEMU0001")),
                                         name("_CRS", io_port_resource(config.pvpanic_port, 1))}));
  // PCI bus 0 behind ports 0xCF8-0xCFF, with the I/O ports around them and the MMIO window
  // as its windows; BARs are assigned by kdom, and MSI-X needs no _PRT.
  Bytes pci0 = device("PCI0", concat({name("_HID", string("PNP0A03")), name("_UID", integer(0)),
                                      name("_CRS", pci_host_bridge_resources(config)),
                                      pci_hotplug_objects(config)}));
  // A hardware-reduced machine has no fixed power button (the FADT says so): this one is a
  // control-method button, notified by the Generic Event Device when its interrupt comes.
  // The GED's _EVT gets the GSI that fired: the power button's or PCI hot-plug's.
  Bytes power_button = device("PWRB", concat({name("_HID", string("PNP0C0C")), name("_UID", integer(0))}));
  Bytes event_device = device(
      "GED0",
      concat({name("_HID", string("ACPI0013")), name("_UID", integer(0)),
              name("_CRS", edge_interrupt_resource({config.power_button_gsi, config.pci_hotplug_gsi})),
              method("_EVT", 1,
                     concat({if_then(equal(argument(0), integer(config.power_button_gsi)),
                                     notify(root_path({"_SB_", "PWRB"}), kAcpiNotifyButtonPressed)),
                             if_then(equal(argument(0), integer(config.pci_hotplug_gsi)),
                                     root_path({"_SB_", "PCI0", "PCNT"}))}))}));
  return concat({name("_S5_", package({integer(kAcpiS5SleepType), integer(0)})),
                 scope("_SB_", concat({pci0, com1, rtc, pvpanic, power_button, event_device}))});
}

std::vector<uint8_t> fadt_body(const AcpiConfig& config, uint64_t dsdt_address) {
  std::vector<uint8_t> body(kFadtSize - kHeaderSize, 0);
  Writer w(body, 0);
  auto at = [](size_t fadt_offset) { return fadt_offset - kHeaderSize; };
  w.put<uint8_t>(at(108), kCmosCenturyIndex);
  w.put<uint16_t>(at(109), kBootArchVgaAbsent);
  w.put<uint32_t>(at(112), kFadtHardwareReduced | kFadtResetRegSupported | kFadtPowerButtonAbsent |
                               kFadtSleepButtonAbsent);
  w.put_gas(at(116), config.reset_port);
  w.put<uint8_t>(at(128), config.reset_value);
  w.put<uint8_t>(at(131), kFadtMinorRevision);
  w.put<uint64_t>(at(140), dsdt_address);
  w.put_gas(at(244), config.sleep_control_port);
  w.put_gas(at(256), config.sleep_status_port);
  w.put_text(at(268), "KDOMKDOM");
  return body;
}

std::vector<uint8_t> madt_body(const AcpiConfig& config) {
  std::vector<uint8_t> body;
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) body.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  put32(static_cast<uint32_t>(kLocalApicAddress));
  put32(0);  // flags: no dual 8259 setup to honour (hardware-reduced)
  for (uint32_t cpu = 0; cpu < config.vcpu_count; ++cpu) {
    // Processor Local APIC: type 0, length 8, processor UID, APIC ID, flags (enabled).
    body.insert(body.end(), {0, 8, static_cast<uint8_t>(cpu), static_cast<uint8_t>(cpu)});
    put32(1);
  }
  // I/O APIC: type 1, length 12, id 0, reserved, address, GSI base 0.
  body.insert(body.end(), {1, 12, 0, 0});
  put32(static_cast<uint32_t>(kIoApicAddress));
  put32(0);
  // Local APIC NMI: type 4, length 6, all processors, flags 0, LINT1.
  body.insert(body.end(), {4, 6, 0xff, 0, 0, 1});
  return body;
}

}  // namespace

uint8_t acpi_checksum(const uint8_t* data, size_t length) {
  uint8_t sum = 0;
  for (size_t i = 0; i < length; ++i) sum = static_cast<uint8_t>(sum + data[i]);
  return sum;
}

AcpiTables build_acpi_tables(const AcpiConfig& config, uint64_t address) {
  TableBuilder builder(address);
  constexpr size_t kRsdpSize = 36;
  size_t rsdp = builder.reserve(kRsdpSize);
  size_t dsdt = builder.add_table("DSDT", 2, dsdt_body(config));
  size_t fadt = builder.add_table("FACP", kFadtRevision, fadt_body(config, builder.address_of(dsdt)));
  size_t madt = builder.add_table("APIC", 4, madt_body(config));
  std::vector<uint8_t> xsdt_entries(16);
  uint64_t fadt_address = builder.address_of(fadt), madt_address = builder.address_of(madt);
  std::memcpy(xsdt_entries.data(), &fadt_address, 8);
  std::memcpy(xsdt_entries.data() + 8, &madt_address, 8);
  size_t xsdt = builder.add_table("XSDT", 1, xsdt_entries);

  auto& bytes = builder.bytes();
  Writer w(bytes, rsdp);
  w.put_text(0, "RSD PTR ");
  w.put_text(9, "KDOM  ");
  w.put<uint8_t>(15, 2);  // revision: ACPI 2.0+ (XSDT)
  w.put<uint32_t>(20, kRsdpSize);
  w.put<uint64_t>(24, builder.address_of(xsdt));
  bytes[rsdp + 8] = static_cast<uint8_t>(-acpi_checksum(bytes.data() + rsdp, 20));
  bytes[rsdp + 32] = static_cast<uint8_t>(-acpi_checksum(bytes.data() + rsdp, kRsdpSize));

  AcpiTables tables;
  tables.address = address;
  tables.rsdp_address = builder.address_of(rsdp);
  tables.bytes = std::move(bytes);
  return tables;
}

}  // namespace kdom::x86
