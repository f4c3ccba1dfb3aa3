// A few ACPI Machine Language (AML) encodings, enough for kdom's DSDT: names, packages,
// strings, integers, devices, scopes, I/O port and interrupt resource templates, and a method
// that notifies a device.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace kdom::x86::aml {

using Bytes = std::vector<uint8_t>;

// PkgLength encoding of a body of `length` bytes (the encoding counts itself).
Bytes package_length(size_t length);
// A 4-character name segment ("_S5_", "PEVT"); shorter names are padded with '_'.
Bytes name_segment(std::string_view name);
Bytes integer(uint64_t value);
Bytes string(std::string_view value);
Bytes package(const std::vector<Bytes>& elements);
// Name(name, object)
Bytes name(std::string_view name, const Bytes& object);
// Device(name) { body }
Bytes device(std::string_view name, const Bytes& body);
// Scope(path) { body }; path is a root-relative name like "\\_SB_".
Bytes scope(std::string_view root_name, const Bytes& body);
// Method(name, arg_count) { body }, not serialized.
Bytes method(std::string_view name, uint8_t arg_count, const Bytes& body);
// Notify(\scope.device, value); scope and device are name segments under the root.
Bytes notify(std::string_view scope, std::string_view device, uint8_t value);
// ResourceTemplate() { descriptors } (the end tag is added).
Bytes resource_template(const Bytes& descriptors);
// Address space descriptors a PCI host bridge produces (WordBusNumber, WordIO, DWordMemory).
Bytes word_bus_numbers(uint16_t first, uint16_t last);
Bytes word_io_window(uint16_t first, uint16_t last);
Bytes dword_memory_window(uint32_t first, uint32_t last);
// ResourceTemplate() { IO(Decode16, base, base, 1, length) [IRQNoFlags() {irq}] }: an
// I/O port range and, optionally, an edge-triggered active-high ISA interrupt.
Bytes io_port_resource(uint16_t base, uint8_t length, int irq = -1);
// ResourceTemplate() { Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } }.
Bytes edge_interrupt_resource(uint32_t gsi);

}  // namespace kdom::x86::aml
