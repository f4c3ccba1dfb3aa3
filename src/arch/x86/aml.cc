// AML byte encodings (ACPI specification, chapter 20).
#include "arch/x86/aml.h"

#include "base/error.h"

namespace kdom::x86::aml {

namespace {
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kDeviceOp = 0x82;
constexpr uint8_t kNotifyOp = 0x86;
constexpr uint8_t kMultiNamePrefix = 0x2f;
constexpr uint8_t kLocal0Op = 0x60;
constexpr uint8_t kArg0Op = 0x68;
constexpr uint8_t kStoreOp = 0x70;
constexpr uint8_t kAndOp = 0x7b;
constexpr uint8_t kLEqualOp = 0x93;
constexpr uint8_t kIfOp = 0xa0;
constexpr uint8_t kOpRegionOp = 0x80;  // after kExtOpPrefix
constexpr uint8_t kFieldOp = 0x81;     // after kExtOpPrefix
constexpr uint8_t kNullName = 0x00;
constexpr uint8_t kSystemIoSpace = 0x01;
// Field flags: DWordAcc (3), NoLock (0 << 4), WriteAsZeros (2 << 5).
constexpr uint8_t kDwordAccWriteAsZeros = 0x03 | (2 << 5);
constexpr uint8_t kRootChar = '\\';

void append(Bytes& out, const Bytes& more) {
  for (uint8_t byte : more) out.push_back(byte);
}

Bytes with_length(uint8_t op, const Bytes& body) {
  Bytes out;
  out.push_back(op);
  append(out, package_length(body.size()));
  append(out, body);
  return out;
}
}  // namespace

Bytes package_length(size_t length) {
  // The encoding's own size counts toward the length; try 1 to 4 bytes.
  for (size_t bytes = 1; bytes <= 4; ++bytes) {
    size_t total = length + bytes;
    if (bytes == 1 && total < 0x40) return {static_cast<uint8_t>(total)};
    if (bytes > 1 && total < (size_t{1} << (4 + 8 * (bytes - 1)))) {
      Bytes out{static_cast<uint8_t>(((bytes - 1) << 6) | (total & 0x0f))};
      for (size_t i = 1; i < bytes; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * (i - 1))));
      return out;
    }
  }
  throw Error("AML package too long");
}

Bytes name_segment(std::string_view name) {
  if (name.empty() || name.size() > 4) throw Error("bad AML name segment");
  Bytes out;
  for (char c : name) out.push_back(static_cast<uint8_t>(c));
  out.resize(4, '_');
  return out;
}

Bytes integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  Bytes out;
  int width;
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    width = 1;
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    width = 2;
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    width = 4;
  } else {
    out.push_back(kQWordPrefix);
    width = 8;
  }
  for (int i = 0; i < width; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
  return out;
}

Bytes string(std::string_view value) {
  Bytes out;
  out.push_back(kStringPrefix);
  for (char c : value) out.push_back(static_cast<uint8_t>(c));
  out.push_back(0);
  return out;
}

Bytes package(const std::vector<Bytes>& elements) {
  Bytes body{static_cast<uint8_t>(elements.size())};
  for (const auto& element : elements) append(body, element);
  return with_length(kPackageOp, body);
}

Bytes name(std::string_view name, const Bytes& object) {
  Bytes out{kNameOp};
  append(out, name_segment(name));
  append(out, object);
  return out;
}

Bytes device(std::string_view name, const Bytes& body) {
  Bytes inner = name_segment(name);
  append(inner, body);
  Bytes out{kExtOpPrefix};
  append(out, with_length(kDeviceOp, inner));
  return out;
}

Bytes scope(std::string_view root_name, const Bytes& body) {
  Bytes inner{kRootChar};
  append(inner, name_segment(root_name));
  append(inner, body);
  return with_length(kScopeOp, inner);
}

Bytes method(std::string_view name, uint8_t arg_count, const Bytes& body) {
  if (arg_count > 7) throw Error("an AML method takes at most 7 arguments");
  Bytes inner = name_segment(name);
  inner.push_back(arg_count);  // flags: the count in bits 0-2, not serialized, sync level 0
  append(inner, body);
  return with_length(kMethodOp, inner);
}

Bytes notify(const Bytes& target, uint8_t value) {
  Bytes out{kNotifyOp};
  append(out, target);
  append(out, integer(value));
  return out;
}

Bytes name_ref(std::string_view segment) { return name_segment(segment); }

Bytes root_path(const std::vector<std::string_view>& segments) {
  if (segments.empty() || segments.size() > 255) throw Error("bad AML name path");
  Bytes out{kRootChar};
  if (segments.size() == 2) out.push_back(kDualNamePrefix);
  if (segments.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segments.size()));
  }
  for (auto segment : segments) append(out, name_segment(segment));
  return out;
}

Bytes local(int index) {
  if (index < 0 || index > 7) throw Error("AML has Local0 to Local7");
  return {static_cast<uint8_t>(kLocal0Op + index)};
}

Bytes argument(int index) {
  if (index < 0 || index > 6) throw Error("AML has Arg0 to Arg6");
  return {static_cast<uint8_t>(kArg0Op + index)};
}

Bytes if_then(const Bytes& predicate, const Bytes& body) {
  Bytes inner = predicate;
  append(inner, body);
  return with_length(kIfOp, inner);
}

Bytes bit_and(const Bytes& a, const Bytes& b) {
  Bytes out{kAndOp};
  append(out, a);
  append(out, b);
  out.push_back(kNullName);
  return out;
}

Bytes equal(const Bytes& a, const Bytes& b) {
  Bytes out{kLEqualOp};
  append(out, a);
  append(out, b);
  return out;
}

Bytes store(const Bytes& value, const Bytes& target) {
  Bytes out{kStoreOp};
  append(out, value);
  append(out, target);
  return out;
}

Bytes io_region(std::string_view name, uint16_t port, uint16_t length) {
  Bytes out{kExtOpPrefix, kOpRegionOp};
  append(out, name_segment(name));
  out.push_back(kSystemIoSpace);
  append(out, integer(port));
  append(out, integer(length));
  return out;
}

Bytes dword_fields(std::string_view region, const std::vector<std::string_view>& names) {
  Bytes inner = name_segment(region);
  inner.push_back(kDwordAccWriteAsZeros);
  for (auto field : names) {
    append(inner, name_segment(field));
    inner.push_back(32);  // the field's width in bits (a one-byte PkgLength-style number)
  }
  Bytes out{kExtOpPrefix};
  append(out, with_length(kFieldOp, inner));
  return out;
}

Bytes resource_template(const Bytes& descriptors) {
  Bytes all = descriptors;
  all.push_back(0x79);  // end tag, checksum 0
  all.push_back(0x00);
  Bytes body = integer(all.size());
  append(body, all);
  return with_length(kBufferOp, body);
}

namespace {
void put_le(Bytes& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

// A large Word Address Space descriptor: type 0 memory, 1 I/O, 2 bus numbers; produced by the
// device (a bridge window), fixed minimum and maximum.
Bytes word_address_space(uint8_t resource_type, uint8_t type_flags, uint16_t first, uint16_t last) {
  Bytes out{0x88, 13, 0, resource_type, 0x0c, type_flags};
  put_le(out, 0, 2);  // granularity
  put_le(out, first, 2);
  put_le(out, last, 2);
  put_le(out, 0, 2);  // translation offset
  put_le(out, uint32_t{last} - first + 1, 2);
  return out;
}
}  // namespace

Bytes word_bus_numbers(uint16_t first, uint16_t last) { return word_address_space(2, 0, first, last); }

Bytes word_io_window(uint16_t first, uint16_t last) {
  return word_address_space(1, 0x03, first, last);  // ISA and non-ISA ranges
}

Bytes dword_memory_window(uint32_t first, uint32_t last) {
  Bytes out{0x87, 23, 0, 0, 0x0c, 0x01};  // memory, producer, fixed, read-write, non-cacheable
  put_le(out, 0, 4);  // granularity
  put_le(out, first, 4);
  put_le(out, last, 4);
  put_le(out, 0, 4);  // translation offset
  put_le(out, uint64_t{last} - first + 1, 4);
  return out;
}

Bytes edge_interrupt_resource(const std::vector<uint32_t>& gsis) {
  Bytes descriptors;
  for (uint32_t gsi : gsis) {
    // Extended Interrupt descriptor: length 6 (flags, count, one GSI); flags: consumer (bit 0),
    // edge-triggered (bit 1), active high and exclusive (bits 2 and 3 clear).
    Bytes descriptor{0x89, 6, 0, 0x03, 1};
    put_le(descriptor, gsi, 4);
    append(descriptors, descriptor);
  }
  return resource_template(descriptors);
}

Bytes io_port_resource(uint16_t base, uint8_t length, int irq) {
  const uint8_t lo = static_cast<uint8_t>(base), hi = static_cast<uint8_t>(base >> 8);
  // Small I/O port descriptor (decode 16, min = max = base, alignment 1).
  Bytes descriptors{0x47, 0x01, lo, hi, lo, hi, 0x01, length};
  if (irq >= 0 && irq < 16) {
    // Small IRQ descriptor without flags byte: a 16-bit mask of ISA IRQs.
    uint16_t mask = static_cast<uint16_t>(1u << irq);
    descriptors.push_back(0x22);
    descriptors.push_back(static_cast<uint8_t>(mask));
    descriptors.push_back(static_cast<uint8_t>(mask >> 8));
  }
  return resource_template(descriptors);
}

}  // namespace kdom::x86::aml
