// Tests of the AML encoders: PkgLength at its size boundaries (decoded value = body length
// + the encoding's own size), integer opcodes by width, name segments, strings, packages,
// scopes, devices, methods, Notify, and the I/O port and interrupt resource templates.
#include "arch/x86/aml.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace kdom::x86::aml {
namespace {

// Decodes a PkgLength (ACPI 6.x, 20.2.4).
size_t decode_package_length(const Bytes& encoded) {
  size_t follow = encoded.at(0) >> 6;
  if (follow == 0) return encoded[0] & 0x3f;
  size_t value = encoded[0] & 0x0f;
  for (size_t i = 1; i <= follow; ++i) value |= size_t{encoded.at(i)} << (4 + 8 * (i - 1));
  return value;
}

void expect_package_length(size_t length, size_t encoded_size) {
  Bytes encoded = package_length(length);
  ASSERT_EQ(encoded.size(), encoded_size) << "length " << length;
  EXPECT_EQ(encoded[0] >> 6, encoded_size - 1) << "length " << length;
  if (encoded_size > 1) {
    EXPECT_EQ(encoded[0] & 0x30, 0) << "bits 4-5 must be zero, length " << length;
  }
  EXPECT_EQ(decode_package_length(encoded), length + encoded_size) << "length " << length;
}

TEST(AmlPackageLength, OneByteUpToSixtyTwo) {
  expect_package_length(0, 1);
  expect_package_length(62, 1);
  EXPECT_EQ(package_length(62), Bytes{0x3f});
}

TEST(AmlPackageLength, TwoBytesFromSixtyThree) {
  expect_package_length(63, 2);
  EXPECT_EQ(package_length(63), (Bytes{0x41, 0x04}));  // 65 = 0x041
}

TEST(AmlPackageLength, TwoToThreeBytesBoundary) {
  expect_package_length(4093, 2);  // 4095 fits 12 bits
  expect_package_length(4094, 3);  // 4096 + 1 needs 20 bits
  expect_package_length(4095, 3);
}

TEST(AmlPackageLength, ThreeToFourBytesBoundary) {
  expect_package_length((size_t{1} << 20) - 4, 3);
  expect_package_length((size_t{1} << 20) - 3, 4);
}

TEST(AmlPackageLength, EveryLengthRoundTripsWithTheSmallestEncoding) {
  for (size_t length = 0; length < 70000; ++length) {
    Bytes encoded = package_length(length);
    ASSERT_EQ(decode_package_length(encoded), length + encoded.size()) << length;
    if (encoded.size() > 1) {
      // One byte fewer would not have been enough.
      size_t smaller_limit = encoded.size() == 2 ? 0x40 : size_t{1} << (4 + 8 * (encoded.size() - 2));
      ASSERT_GE(length + encoded.size() - 1, smaller_limit) << length;
    }
  }
}

TEST(AmlPackageLength, TooLongIsAnError) { EXPECT_THROW(package_length(size_t{1} << 28), Error); }

TEST(AmlInteger, UsesTheSmallestOpcode) {
  EXPECT_EQ(integer(0), Bytes{0x00});  // ZeroOp
  EXPECT_EQ(integer(1), Bytes{0x01});  // OneOp
  EXPECT_EQ(integer(2), (Bytes{0x0a, 0x02}));
  EXPECT_EQ(integer(0xff), (Bytes{0x0a, 0xff}));
  EXPECT_EQ(integer(0x100), (Bytes{0x0b, 0x00, 0x01}));
  EXPECT_EQ(integer(0xffff), (Bytes{0x0b, 0xff, 0xff}));
  EXPECT_EQ(integer(0x10000), (Bytes{0x0c, 0x00, 0x00, 0x01, 0x00}));
  EXPECT_EQ(integer(0xffffffff), (Bytes{0x0c, 0xff, 0xff, 0xff, 0xff}));
  EXPECT_EQ(integer(uint64_t{1} << 32), (Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(integer(0x0102030405060708ULL), (Bytes{0x0e, 8, 7, 6, 5, 4, 3, 2, 1}));
}

TEST(AmlNameSegment, PadsWithUnderscores) {
  EXPECT_EQ(name_segment("_S5_"), (Bytes{'_', 'S', '5', '_'}));
  EXPECT_EQ(name_segment("AB"), (Bytes{'A', 'B', '_', '_'}));
  EXPECT_EQ(name_segment("X"), (Bytes{'X', '_', '_', '_'}));
}

TEST(AmlNameSegment, EmptyOrLongNamesAreErrors) {
  EXPECT_THROW(name_segment(""), Error);
  EXPECT_THROW(name_segment("ABCDE"), Error);
}

TEST(AmlString, IsNulTerminated) { EXPECT_EQ(string("AB"), (Bytes{0x0d, 'A', 'B', 0})); }

TEST(AmlName, IsNameOpSegmentObject) { EXPECT_EQ(name("FOO", integer(1)), (Bytes{0x08, 'F', 'O', 'O', '_', 0x01})); }

TEST(AmlPackage, HasLengthCountAndElements) {
  // Package() { 5, 0 }: PackageOp, PkgLength 5, NumElements 2, ByteConst 5, Zero.
  EXPECT_EQ(package({integer(5), integer(0)}), (Bytes{0x12, 0x05, 0x02, 0x0a, 0x05, 0x00}));
}

TEST(AmlPackage, LongPackageUsesMultiByteLength) {
  std::vector<Bytes> elements(40, integer(0x1234));  // 3 bytes each
  Bytes encoded = package(elements);
  size_t body = 1 + 40 * 3;  // NumElements + elements
  ASSERT_EQ(encoded.size(), 1 + 2 + body);
  EXPECT_EQ(decode_package_length(Bytes(encoded.begin() + 1, encoded.begin() + 3)), 2 + body);
  EXPECT_EQ(encoded[3], 40);
}

TEST(AmlScope, IsRootRelative) {
  EXPECT_EQ(scope("_SB_", {}), (Bytes{0x10, 0x06, '\\', '_', 'S', 'B', '_'}));
}

TEST(AmlDevice, UsesExtOpPrefix) {
  EXPECT_EQ(device("PEVT", {0x01}), (Bytes{0x5b, 0x82, 0x06, 'P', 'E', 'V', 'T', 0x01}));
}

TEST(AmlIoPortResource, IsABufferWithAnIoDescriptorAndEndTag) {
  Bytes expected{0x11, 0x0d,                                // BufferOp, PkgLength 13
                 0x0a, 0x0a,                                // buffer size 10
                 0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01,  // IO(Decode16, 0x505, 0x505, 1, 1)
                 0x79, 0x00};                               // end tag
  EXPECT_EQ(io_port_resource(0x505, 1), expected);
  Bytes other = io_port_resource(0x3f8, 8);
  EXPECT_EQ(other[6], 0xf8);
  EXPECT_EQ(other[7], 0x03);
  EXPECT_EQ(other[11], 8);
}

TEST(AmlMethod, HasLengthNameAndArgumentCount) {
  EXPECT_EQ(method("_EVT", 1, {0xa3}), (Bytes{0x14, 0x07, '_', 'E', 'V', 'T', 0x01, 0xa3}));
  EXPECT_THROW(method("_EVT", 8, {}), Error);
}

TEST(AmlNotify, NamesTheDeviceFromTheRootOrTheScope) {
  EXPECT_EQ(notify(root_path({"_SB_", "PWRB"}), 0x80),
            (Bytes{0x86, '\\', 0x2e, '_', 'S', 'B', '_', 'P', 'W', 'R', 'B', 0x0a, 0x80}));
  EXPECT_EQ(notify(name_ref("S1F"), 3), (Bytes{0x86, 'S', '1', 'F', '_', 0x0a, 0x03}));
}

TEST(AmlPath, UsesDualAndMultiNamePrefixes) {
  EXPECT_EQ(root_path({"PCI0"}), (Bytes{'\\', 'P', 'C', 'I', '0'}));
  EXPECT_EQ(root_path({"_SB_", "PCI0", "PCNT"}),
            (Bytes{'\\', 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'P', 'C', 'N', 'T'}));
  EXPECT_THROW(root_path({}), Error);
}

TEST(AmlExpressions, EncodeIfAndEqualStoreLocalsAndArguments) {
  EXPECT_EQ(local(1), Bytes{0x61});
  EXPECT_EQ(argument(0), Bytes{0x68});
  EXPECT_THROW(local(8), Error);
  EXPECT_THROW(argument(7), Error);
  EXPECT_EQ(store(name_ref("PCIU"), local(0)), (Bytes{0x70, 'P', 'C', 'I', 'U', 0x60}));
  EXPECT_EQ(bit_and(local(0), integer(2)), (Bytes{0x7b, 0x60, 0x0a, 0x02, 0x00}));
  EXPECT_EQ(equal(argument(0), integer(22)), (Bytes{0x93, 0x68, 0x0a, 22}));
  // If: PkgLength covers the predicate and the body.
  EXPECT_EQ(if_then(local(0), {0xa3}), (Bytes{0xa0, 0x03, 0x60, 0xa3}));
}

TEST(AmlRegion, IsSystemIoWithDwordFields) {
  EXPECT_EQ(io_region("PHPR", 0xae00, 12),
            (Bytes{0x5b, 0x80, 'P', 'H', 'P', 'R', 0x01, 0x0b, 0x00, 0xae, 0x0a, 0x0c}));
  EXPECT_EQ(dword_fields("PHPR", {"PCIU", "B0EJ"}),
            (Bytes{0x5b, 0x81, 0x10, 'P', 'H', 'P', 'R', 0x43, 'P', 'C', 'I', 'U', 32, 'B', '0', 'E', 'J', 32}));
}

TEST(AmlEdgeInterruptResource, IsAnExtendedInterruptDescriptorForOneGsi) {
  Bytes expected{0x11, 0x0e,                         // BufferOp, PkgLength 14
                 0x0a, 0x0b,                         // buffer size 11
                 0x89, 0x06, 0x00,                   // Extended Interrupt, length 6
                 0x03,                               // consumer, edge, active high, exclusive
                 0x01, 0x17, 0x00, 0x00, 0x00,       // one GSI: 23
                 0x79, 0x00};                        // end tag
  EXPECT_EQ(edge_interrupt_resource({23}), expected);
  Bytes high = edge_interrupt_resource({0x12345678});
  EXPECT_EQ((Bytes(high.begin() + 9, high.begin() + 13)), (Bytes{0x78, 0x56, 0x34, 0x12}));
  Bytes two = edge_interrupt_resource({22, 23});
  EXPECT_EQ(two.size(), expected.size() + 9);  // a second 9-byte descriptor
  EXPECT_EQ(two[9], 22);
  EXPECT_EQ(two[18], 23);
}

}  // namespace
}  // namespace kdom::x86::aml
