// Tests of ACPI PCI hot-plug's host side: the hot-plug registers (PCIU and PCID set by the host,
// read and cleared by the guest's PCNT method, B0EJ written by its _EJ0, each announcement an
// edge on the GED interrupt) and a root bus whose slots empty and fill again while accesses go on.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/error.h"
#include "devices/pci/hotplug_controller.h"
#include "devices/pci/pci_root_bus.h"

namespace kdom::devices::pci {
namespace {

class EdgeCounter : public InterruptLine {
 public:
  void set_level(bool asserted) override {
    if (asserted && !level_) ++edges;
    level_ = asserted;
  }
  int edges = 0;

 private:
  bool level_ = false;
};

uint32_t read32(BusDevice& device, uint64_t offset) {
  uint8_t bytes[4];
  device.read(offset, bytes);
  return uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 | uint32_t{bytes[2]} << 16 | uint32_t{bytes[3]} << 24;
}

void write32(BusDevice& device, uint64_t offset, uint32_t value) {
  const uint8_t bytes[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                            static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
  device.write(offset, bytes);
}

struct Controller {
  std::shared_ptr<EdgeCounter> line = std::make_shared<EdgeCounter>();
  std::vector<int> ejected;
  PciHotplugController registers{line, [this](int slot) { ejected.push_back(slot); }};
};

TEST(PciHotplugController, AnAddedDeviceIsOneEdgeAndABitTheGuestReadsOnce) {
  Controller c;
  c.registers.announce_added(2);
  c.registers.announce_added(31);
  EXPECT_EQ(c.line->edges, 2);
  EXPECT_EQ(read32(c.registers, PciHotplugController::kAddedOffset), (1u << 2) | (1u << 31));
  EXPECT_EQ(read32(c.registers, PciHotplugController::kAddedOffset), 0u);  // reading cleared it
  EXPECT_EQ(read32(c.registers, PciHotplugController::kRemovalOffset), 0u);
}

TEST(PciHotplugController, ARemovalRequestIsItsOwnRegister) {
  Controller c;
  c.registers.request_removal(5);
  EXPECT_EQ(c.line->edges, 1);
  EXPECT_EQ(read32(c.registers, PciHotplugController::kAddedOffset), 0u);
  EXPECT_EQ(read32(c.registers, PciHotplugController::kRemovalOffset), 1u << 5);
  EXPECT_EQ(read32(c.registers, PciHotplugController::kRemovalOffset), 0u);
}

TEST(PciHotplugController, TheGuestsEjectNamesEachSlotOnce) {
  Controller c;
  write32(c.registers, PciHotplugController::kEjectOffset, (1u << 3) | (1u << 7));
  EXPECT_EQ(c.ejected, (std::vector<int>{3, 7}));
  // Bit 0 is the host bridge's slot: never ejected.
  write32(c.registers, PciHotplugController::kEjectOffset, 1u);
  EXPECT_EQ(c.ejected.size(), 2u);
}

TEST(PciHotplugController, OddAccessesAndSlotsAreRefusedOrIgnored) {
  Controller c;
  EXPECT_THROW(c.registers.announce_added(0), Error);
  EXPECT_THROW(c.registers.request_removal(32), Error);
  EXPECT_THROW(c.registers.announce_added(-1), Error);
  EXPECT_EQ(c.line->edges, 0);
  c.registers.announce_added(4);
  uint8_t byte[1];
  c.registers.read(PciHotplugController::kAddedOffset, byte);  // not a dword: reads 0, clears nothing
  EXPECT_EQ(byte[0], 0);
  EXPECT_EQ(read32(c.registers, PciHotplugController::kAddedOffset), 1u << 4);
  const uint8_t two[2] = {0xff, 0xff};
  c.registers.write(PciHotplugController::kEjectOffset, two);  // not a dword: ignored
  write32(c.registers, PciHotplugController::kAddedOffset, ~0u);  // read-only: ignored
  EXPECT_TRUE(c.ejected.empty());
  EXPECT_EQ(read32(c.registers, 12), 0u);  // past the registers
}

class Dummy : public PciDevice {
 public:
  Dummy() : PciDevice(PciIds{0x1af4, 0x1042, 1, 0x018000, 0, 0, 0}) {}
};

uint16_t vendor_of(const PciRootBus& bus, uint8_t slot) {
  uint8_t bytes[2];
  bus.read_config(0, slot, 0, 0, bytes);
  return static_cast<uint16_t>(bytes[0] | bytes[1] << 8);
}

TEST(PciRootBusHotplug, ARemovedSlotReadsEmptyAndIsFilledAgain) {
  PciRootBus bus;
  const int slot = bus.add(std::make_shared<Dummy>());
  EXPECT_EQ(slot, 1);
  EXPECT_EQ(vendor_of(bus, 1), 0x1af4);
  EXPECT_NE(bus.remove(slot), nullptr);
  EXPECT_EQ(vendor_of(bus, 1), 0xffff);
  EXPECT_EQ(bus.remove(slot), nullptr);  // empty already
  EXPECT_EQ(bus.remove(0), nullptr);     // the host bridge stays
  EXPECT_NE(bus.device(0), nullptr);
  EXPECT_EQ(bus.add(std::make_shared<Dummy>()), 1);  // the lowest free slot again
}

TEST(PciRootBusHotplug, AccessesWhileSlotsComeAndGoSeeADeviceOrNothing) {
  PciRootBus bus;
  std::atomic<bool> stop{false};
  std::atomic<int> odd{0};
  std::thread reader([&] {
    while (!stop) {
      const uint16_t vendor = vendor_of(bus, 1);
      if (vendor != 0x1af4 && vendor != 0xffff) ++odd;
    }
  });
  for (int i = 0; i < 2000; ++i) {
    ASSERT_EQ(bus.add(std::make_shared<Dummy>()), 1);
    ASSERT_NE(bus.remove(1), nullptr);
  }
  stop = true;
  reader.join();
  EXPECT_EQ(odd, 0);
}

TEST(PciRootBusHotplug, AFullBusSaysSo) {
  PciRootBus bus;
  for (int i = 1; i < kSlotCount; ++i) bus.add(std::make_shared<Dummy>());
  try {
    bus.add(std::make_shared<Dummy>());
    FAIL() << "a 32nd device found a slot";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no free slot"), std::string::npos);
  }
}

}  // namespace
}  // namespace kdom::devices::pci
