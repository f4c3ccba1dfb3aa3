// A few ACPI Machine Language (AML) encodings, enough for kdom's DSDT: names, packages,
// strings, integers, devices, scopes, I/O port and interrupt resource templates, methods that
// notify devices, and what the PCI hot-plug methods need (an I/O operation region and its
// fields, If, And, LEqual, Store, locals, arguments, name paths and method calls).
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
// Notify(target, value), `target` being a name (name_ref or root_path).
Bytes notify(const Bytes& target, uint8_t value);
// A name relative to the current scope (one segment, resolved upward as ACPI does).
Bytes name_ref(std::string_view segment);
// An absolute name path: \A, \A.B, \A.B.C...
Bytes root_path(const std::vector<std::string_view>& segments);
Bytes local(int index);     // Local0..Local7
Bytes argument(int index);  // Arg0..Arg6
// If (predicate) { body }
Bytes if_then(const Bytes& predicate, const Bytes& body);
// And(a, b) and LEqual(a, b), as values (no target).
Bytes bit_and(const Bytes& a, const Bytes& b);
Bytes equal(const Bytes& a, const Bytes& b);
// Store(value, target)
Bytes store(const Bytes& value, const Bytes& target);
// OperationRegion(name, SystemIO, port, length)
Bytes io_region(std::string_view name, uint16_t port, uint16_t length);
// Field(region, DWordAcc, NoLock, WriteAsZeros) { names[0], 32, names[1], 32, ... }
Bytes dword_fields(std::string_view region, const std::vector<std::string_view>& names);
// ResourceTemplate() { descriptors } (the end tag is added).
Bytes resource_template(const Bytes& descriptors);
// Address space descriptors a PCI host bridge produces (WordBusNumber, WordIO, DWordMemory).
Bytes word_bus_numbers(uint16_t first, uint16_t last);
Bytes word_io_window(uint16_t first, uint16_t last);
Bytes dword_memory_window(uint32_t first, uint32_t last);
// ResourceTemplate() { IO(Decode16, base, base, 1, length) [IRQNoFlags() {irq}] }: an
// I/O port range and, optionally, an edge-triggered active-high ISA interrupt.
Bytes io_port_resource(uint16_t base, uint8_t length, int irq = -1);
// ResourceTemplate() { Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } ... },
// one descriptor per GSI (a Generic Event Device takes the first interrupt of each).
Bytes edge_interrupt_resource(const std::vector<uint32_t>& gsis);

}  // namespace kdom::x86::aml
