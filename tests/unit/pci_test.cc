// Tests of the PCI bus: configuration mechanism #1 through ports 0xCF8-0xCFF, config space
// write masks, BAR sizing, capability lists, port 0xCF9 forwarding and the BAR allocator.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "base/error.h"
#include "devices/pci/bar_allocator.h"
#include "devices/pci/pci_device.h"
#include "devices/pci/pci_root_bus.h"

namespace kdom::devices::pci {
namespace {

class TestPciDevice : public PciDevice {
 public:
  TestPciDevice() : PciDevice(PciIds{0x1234, 0x5678, 0x03, 0x020000, 0xabcd, 0xef01, 1}) {}
  std::vector<std::pair<uint32_t, uint32_t>> written;

 protected:
  void config_written(uint32_t offset, uint32_t length) override { written.emplace_back(offset, length); }
};

class RecordingDevice : public BusDevice {
 public:
  void read(uint64_t offset, std::span<uint8_t> data) override {
    reads.push_back(offset);
    for (auto& b : data) b = 0x5a;
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.emplace_back(offset, std::vector<uint8_t>(data.begin(), data.end()));
  }
  std::vector<uint64_t> reads;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> writes;
};

uint32_t address(uint32_t bus, uint32_t slot, uint32_t function, uint32_t reg) {
  return PciConfigIo::kEnableBit | bus << 16 | slot << 11 | function << 8 | reg;
}

class PciTest : public ::testing::Test {
 protected:
  std::shared_ptr<PciRootBus> root = std::make_shared<PciRootBus>();
  std::shared_ptr<RecordingDevice> reset = std::make_shared<RecordingDevice>();
  PciConfigIo io{root, reset};
  std::shared_ptr<TestPciDevice> device = std::make_shared<TestPciDevice>();

  void set_address(uint32_t value) {
    const uint8_t bytes[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                              static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
    io.write(0, bytes);
  }
  uint32_t read_data(uint64_t offset, size_t size) {
    uint8_t bytes[4] = {};
    io.read(offset, std::span<uint8_t>(bytes, size));
    uint32_t value = 0;
    for (size_t i = 0; i < size; ++i) value |= uint32_t{bytes[i]} << (8 * i);
    return value;
  }
  void write_data(uint64_t offset, size_t size, uint32_t value) {
    uint8_t bytes[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                        static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
    io.write(offset, std::span<const uint8_t>(bytes, size));
  }
  uint32_t read32(uint32_t slot, uint32_t reg) {
    set_address(address(0, slot, 0, reg));
    return read_data(4, 4);
  }
  void write32(uint32_t slot, uint32_t reg, uint32_t value) {
    set_address(address(0, slot, 0, reg));
    write_data(4, 4, value);
  }
};

TEST_F(PciTest, ConfigAddressReadsBackWithReservedBitsClear) {
  set_address(0x80001233);
  EXPECT_EQ(io.config_address(), 0x80001230u);
  EXPECT_EQ(read_data(0, 4), 0x80001230u);
  set_address(0x7f000000);
  EXPECT_EQ(io.config_address(), 0u);
}

TEST_F(PciTest, HostBridgeAtSlotZero) {
  EXPECT_EQ(read32(0, 0), uint32_t{PciHostBridge::kDeviceId} << 16 | PciHostBridge::kVendorId);
  EXPECT_EQ(read32(0, 8) >> 8, 0x060000u);
  EXPECT_EQ(read32(0, 0xc) >> 16 & 0x7f, 0u);  // header type 0
}

TEST_F(PciTest, AbsentDevicesFunctionsAndBusesReadAllOnes) {
  root->add_at(3, device);
  EXPECT_EQ(read32(5, 0), 0xffffffffu);
  set_address(address(0, 3, 1, 0));
  EXPECT_EQ(read_data(4, 4), 0xffffffffu);
  set_address(address(1, 3, 0, 0));
  EXPECT_EQ(read_data(4, 4), 0xffffffffu);
  // Enable bit clear.
  set_address(address(0, 3, 0, 0) & ~PciConfigIo::kEnableBit);
  EXPECT_EQ(read_data(4, 4), 0xffffffffu);
  // Writes to absent devices are ignored without harm.
  write32(7, 4, 0xffffffff);
}

TEST_F(PciTest, VendorDeviceClassAndSubsystem) {
  const int slot = root->add(device);
  EXPECT_EQ(slot, 1);
  EXPECT_EQ(read32(1, 0), 0x56781234u);
  EXPECT_EQ(read32(1, 8), 0x02000003u);
  EXPECT_EQ(read32(1, 0x2c), 0xef01abcdu);
  EXPECT_EQ(read32(1, 0x3c) >> 8 & 0xff, 1u);  // interrupt pin INTA#
}

TEST_F(PciTest, ByteAndWordAccessesAtDataOffsets) {
  root->add_at(1, device);
  set_address(address(0, 1, 0, 0));
  EXPECT_EQ(read_data(4, 1), 0x34u);
  EXPECT_EQ(read_data(5, 1), 0x12u);
  EXPECT_EQ(read_data(6, 2), 0x5678u);
  EXPECT_EQ(read_data(7, 1), 0x56u);
  EXPECT_EQ(read_data(5, 2), 0x7812u);
  set_address(address(0, 1, 0, 8));
  EXPECT_EQ(read_data(7, 1), 0x02u);  // base class
  // Interrupt line: a byte write at 0xCFC with register 0x3C.
  set_address(address(0, 1, 0, 0x3c));
  write_data(4, 1, 11);
  EXPECT_EQ(device->interrupt_line(), 11);
  // Command register (0x04) through a word write at 0xCFC; status (0x06) is read-only.
  set_address(address(0, 1, 0, 4));
  write_data(4, 2, 0xffff);
  EXPECT_EQ(device->command(), 0x0547);
  write_data(6, 2, 0xffff);
  EXPECT_EQ(read_data(6, 2), 0u);
  // An access crossing the end of the data port is refused.
  EXPECT_EQ(read_data(7, 2), 0xffffu);
}

TEST_F(PciTest, ReadOnlyFieldsSurviveWrites) {
  root->add_at(1, device);
  write32(1, 0, 0xffffffff);
  write32(1, 8, 0);
  write32(1, 0x2c, 0);
  write32(1, 0x34, 0xff);
  write32(1, 0x80, 0xdeadbeef);
  EXPECT_EQ(read32(1, 0), 0x56781234u);
  EXPECT_EQ(read32(1, 8), 0x02000003u);
  EXPECT_EQ(read32(1, 0x2c), 0xef01abcdu);
  EXPECT_EQ(read32(1, 0x34), 0u);
  EXPECT_EQ(read32(1, 0x80), 0u);
  EXPECT_FALSE(device->written.empty());
}

TEST_F(PciTest, Memory32BarSizing) {
  device->add_bar(0, PciBar{PciBarKind::kMemory32, 0x1000, false});
  root->add_at(1, device);
  std::vector<std::tuple<int, uint64_t, uint64_t>> moves;
  device->set_bar_hook([&](int index, uint64_t old_address, uint64_t new_address) {
    moves.emplace_back(index, old_address, new_address);
  });
  device->set_bar_address(0, 0xc0000000);
  EXPECT_EQ(read32(1, 0x10), 0xc0000000u);
  write32(1, 0x10, 0xffffffff);
  EXPECT_EQ(read32(1, 0x10), 0xfffff000u);  // size mask, memory type 32-bit
  write32(1, 0x10, 0xc0000000);
  EXPECT_TRUE(moves.empty());  // the probe and the restore moved nothing
  write32(1, 0x10, 0xd0000123);
  EXPECT_EQ(read32(1, 0x10), 0xd0000000u);
  EXPECT_EQ(device->bar_address(0), 0xd0000000u);
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0], std::make_tuple(0, uint64_t{0xc0000000}, uint64_t{0xd0000000}));
  // Unused BARs read zero and stay zero.
  write32(1, 0x14, 0xffffffff);
  EXPECT_EQ(read32(1, 0x14), 0u);
}

TEST_F(PciTest, Memory64BarSizing) {
  device->add_bar(2, PciBar{PciBarKind::kMemory64, 0x4000, true});
  root->add_at(1, device);
  std::vector<uint64_t> moves;
  device->set_bar_hook([&](int index, uint64_t, uint64_t new_address) {
    EXPECT_EQ(index, 2);
    moves.push_back(new_address);
  });
  EXPECT_EQ(read32(1, 0x18), 0xcu);  // 64-bit, prefetchable
  write32(1, 0x18, 0xffffffff);
  EXPECT_EQ(read32(1, 0x18), 0xffffc00cu);
  write32(1, 0x18, 0);
  write32(1, 0x1c, 0xffffffff);
  EXPECT_EQ(read32(1, 0x1c), 0xffffffffu);
  write32(1, 0x1c, 0);
  EXPECT_TRUE(moves.empty());
  write32(1, 0x18, 0xe0000000);
  write32(1, 0x1c, 0x1);
  EXPECT_EQ(device->bar_address(2), 0x1e0000000u);
  ASSERT_EQ(moves.size(), 2u);
  EXPECT_EQ(moves[0], 0xe0000000u);
  EXPECT_EQ(moves[1], 0x1e0000000u);
  EXPECT_EQ(device->bar(2).size, 0x4000u);
}

TEST_F(PciTest, IoBarSizing) {
  device->add_bar(4, PciBar{PciBarKind::kIo, 0x20, false});
  root->add_at(1, device);
  write32(1, 0x20, 0xffffffff);
  EXPECT_EQ(read32(1, 0x20), 0xffffffe1u);
  write32(1, 0x20, 0xc040);
  EXPECT_EQ(device->bar_address(4), 0xc040u);
  EXPECT_EQ(read32(1, 0x20), 0xc041u);
}

TEST_F(PciTest, BarDeclarationErrors) {
  EXPECT_THROW(device->add_bar(5, PciBar{PciBarKind::kMemory64, 0x1000, false}), Error);
  EXPECT_THROW(device->add_bar(0, PciBar{PciBarKind::kMemory32, 0x1800, false}), Error);
  EXPECT_THROW(device->add_bar(0, PciBar{PciBarKind::kMemory32, 8, false}), Error);
  device->add_bar(0, PciBar{PciBarKind::kMemory64, 0x1000, false});
  EXPECT_THROW(device->add_bar(1, PciBar{PciBarKind::kMemory32, 0x1000, false}), Error);
  EXPECT_THROW(device->set_bar_address(0, 0x800), Error);
}

TEST_F(PciTest, CapabilityChainWalk) {
  const uint8_t body_a[] = {1, 2, 3, 4, 5};
  const uint8_t body_b[] = {0xaa, 0xbb};
  const uint8_t mask_b[] = {0xff, 0x00};
  const uint8_t a = device->add_capability(kCapabilityIdVendor, body_a);
  const uint8_t b = device->add_capability(kCapabilityIdMsix, body_b, mask_b);
  EXPECT_EQ(a, 0x40);
  EXPECT_EQ(b % 4, 0);
  root->add_at(2, device);
  EXPECT_EQ(read32(2, 4) >> 16 & kStatusCapabilityList, kStatusCapabilityList);
  std::vector<std::pair<uint8_t, uint8_t>> found;  // (offset, id)
  uint32_t pointer = read32(2, 0x34) & 0xff;
  while (pointer != 0 && found.size() < 48) {
    const uint32_t header = read32(2, pointer & 0xfc);
    found.emplace_back(pointer, header & 0xff);
    pointer = header >> 8 & 0xff;
  }
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0], std::make_pair(a, kCapabilityIdVendor));
  EXPECT_EQ(found[1], std::make_pair(b, kCapabilityIdMsix));
  EXPECT_EQ(read32(2, a) >> 16, 0x0201u);
  // Only the masked body byte is writable; id and next stay.
  write32(2, b, 0xffffffff);
  EXPECT_EQ(read32(2, b), 0xbbffu << 16 | kCapabilityIdMsix);
}

TEST_F(PciTest, CapabilitySpaceRunsOut) {
  const std::vector<uint8_t> body(80);  // 82 bytes each: 0x40, 0x94, then no room
  device->add_capability(kCapabilityIdVendor, body);
  device->add_capability(kCapabilityIdVendor, body);
  EXPECT_THROW(device->add_capability(kCapabilityIdVendor, body), Error);
}

TEST_F(PciTest, ResetControlPortIsForwarded) {
  write_data(1, 1, 0x06);
  ASSERT_EQ(reset->writes.size(), 1u);
  EXPECT_EQ(reset->writes[0].first, 0u);
  EXPECT_EQ(reset->writes[0].second, std::vector<uint8_t>{0x06});
  EXPECT_EQ(read_data(1, 1), 0x5au);
  EXPECT_EQ(reset->reads.size(), 1u);
  // CONFIG_ADDRESS is unchanged by the byte access.
  set_address(address(0, 0, 0, 0));
  write_data(1, 1, 0);
  EXPECT_EQ(io.config_address(), address(0, 0, 0, 0));
  // Word accesses at 0xCF8 do not reach CONFIG_ADDRESS or the reset register.
  write_data(0, 2, 0x1234);
  EXPECT_EQ(io.config_address(), address(0, 0, 0, 0));
  EXPECT_EQ(reset->writes.size(), 2u);
  // Without a reset device, 0xCF9 reads all-ones.
  PciConfigIo bare{root};
  uint8_t byte = 0;
  bare.read(1, std::span<uint8_t>(&byte, 1));
  EXPECT_EQ(byte, 0xff);
}

TEST_F(PciTest, SlotsFillAndRefuseDuplicates) {
  EXPECT_THROW(root->add_at(0, device), Error);
  EXPECT_THROW(root->add_at(32, device), Error);
  for (int i = 1; i < kSlotCount; ++i) EXPECT_EQ(root->add(std::make_shared<TestPciDevice>()), i);
  EXPECT_THROW(root->add(device), Error);
}

TEST_F(PciTest, EcamReachesTheSameConfigSpace) {
  root->add_at(3, device);
  PciEcam ecam{root};
  auto ecam_read = [&](uint64_t offset, size_t size) {
    uint8_t bytes[4] = {};
    ecam.read(offset, std::span<uint8_t>(bytes, size));
    uint32_t value = 0;
    for (size_t i = 0; i < size; ++i) value |= uint32_t{bytes[i]} << (8 * i);
    return value;
  };
  const uint64_t slot3 = uint64_t{3} << 15;
  EXPECT_EQ(ecam_read(slot3, 4), 0x56781234u);
  EXPECT_EQ(ecam_read(slot3 + 2, 2), 0x5678u);
  EXPECT_EQ(ecam_read(slot3 + 0xb, 1), 0x02u);
  EXPECT_EQ(ecam_read(0, 4), uint32_t{PciHostBridge::kDeviceId} << 16 | PciHostBridge::kVendorId);
  EXPECT_EQ(ecam_read(slot3 + 0x100, 4), 0u);            // no extended capabilities
  EXPECT_EQ(ecam_read(uint64_t{4} << 15, 4), 0xffffffffu);  // absent slot
  EXPECT_EQ(ecam_read(slot3 | 1 << 12, 4), 0xffffffffu);    // function 1
  EXPECT_EQ(ecam_read(PciEcam::kBytesPerBus + slot3, 4), 0xffffffffu);  // bus 1
  EXPECT_EQ(ecam_read(slot3 + 3, 2), 0xffffu);             // crosses a dword
  const uint8_t line = 9;
  ecam.write(slot3 + 0x3c, std::span<const uint8_t>(&line, 1));
  EXPECT_EQ(device->interrupt_line(), 9);
  EXPECT_EQ(read32(3, 0x3c) & 0xff, 9u);
}

TEST(PciBarAllocatorTest, AlignsToSizeAndRunsOut) {
  PciBarAllocator allocator(kPciMmioWindowStart, kPciMmioWindowEnd);
  EXPECT_EQ(allocator.allocate(0x100), 0xc0000000u);
  EXPECT_EQ(allocator.allocate(0x4000), 0xc0004000u);
  EXPECT_EQ(allocator.allocate(0x1000), 0xc0008000u);
  EXPECT_EQ(allocator.allocate(0x10000000), 0xd0000000u);
  EXPECT_THROW(allocator.allocate(0x3000), Error);
  EXPECT_THROW(allocator.allocate(0x40000000), Error);
  PciBarAllocator small(0x1000, 0x3000);
  EXPECT_EQ(small.allocate(0x1000), 0x1000u);
  EXPECT_EQ(small.allocate(0x1000), 0x2000u);
  EXPECT_THROW(small.allocate(0x1000), Error);
}

}  // namespace
}  // namespace kdom::devices::pci
