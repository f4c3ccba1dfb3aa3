// Tests of saving and restoring PCI state: a function's config space (BARs decoding at the
// loaded addresses, no BAR hook on load), the MSI-X table with its pending bits (routes rebuilt
// through MsixInterrupts::update on load) and the hot-plug registers, and hostile states
// refused with nothing changed.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "devices/pci/hotplug_controller.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_device.h"
#include "snapshot/state_json.h"

namespace kdom::devices::pci {
namespace {

using snapshot::StateError;

constexpr PciIds kIds{0x1234, 0x5678, 0x03, 0x020000, 0xabcd, 0xef01, 1};

// A function with a 64-bit memory BAR at 0, an I/O BAR at 2 and a capability with one
// writable byte; each guest BAR move is recorded.
struct Function {
  explicit Function(const PciIds& ids = kIds) : device(ids) {
    device.add_bar(0, PciBar{PciBarKind::kMemory64, 0x4000, false});
    device.add_bar(2, PciBar{PciBarKind::kIo, 0x20, false});
    const uint8_t body[] = {0x11, 0x22};
    const uint8_t writable[] = {0x00, 0xff};
    device.add_capability(kCapabilityIdVendor, body, writable);
    device.set_bar_hook([this](int index, uint64_t old_address, uint64_t new_address) {
      moves.push_back({index, old_address, new_address});
    });
  }
  void write32(uint32_t offset, uint32_t value) {
    const uint8_t b[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                          static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
    device.write_config(offset, b);
  }
  std::vector<uint8_t> config() {
    std::vector<uint8_t> bytes(kConfigSpaceSize);
    device.read_config(0, bytes);
    return bytes;
  }
  struct Move {
    int index;
    uint64_t old_address, new_address;
  };
  PciDevice device;
  std::vector<Move> moves;
};

// The guest's programming: BARs moved, decoding on, the capability's writable byte set.
void program(Function& f) {
  f.write32(kBar0Offset, 0xd0000000);
  f.write32(kBar0Offset + 4, 0x1);  // above 4 GiB
  f.write32(kBar0Offset + 8, 0xc040);
  f.write32(kCommandOffset, kCommandMemorySpace | kCommandIoSpace | kCommandBusMaster);
  f.write32(kInterruptLineOffset, 11);
  const uint8_t value = 0x5a;
  f.device.write_config(kFirstCapabilityOffset + 3, std::span<const uint8_t>(&value, 1));
}

TEST(PciDeviceState, RoundTripDecodesAtTheSavedAddressesWithoutTheHook) {
  Function source;
  program(source);
  const nlohmann::json state = source.device.save_state();

  Function target;
  target.device.load_state(state, "test function");
  EXPECT_EQ(target.config(), source.config());
  EXPECT_EQ(target.device.bar_address(0), 0x1d0000000u);
  EXPECT_EQ(target.device.bar_address(2), 0xc040u);
  EXPECT_EQ(target.device.command(), kCommandMemorySpace | kCommandIoSpace | kCommandBusMaster);
  EXPECT_EQ(target.device.interrupt_line(), 11);
  EXPECT_TRUE(target.moves.empty());

  // A later guest move reports the loaded address as the old one.
  target.write32(kBar0Offset + 8, 0xc080);
  ASSERT_EQ(target.moves.size(), 1u);
  EXPECT_EQ(target.moves[0].index, 2);
  EXPECT_EQ(target.moves[0].old_address, 0xc040u);
  EXPECT_EQ(target.moves[0].new_address, 0xc080u);
}

// Loads `state` into a fresh function and expects a StateError whose message holds `words`,
// with the function's config space as it was.
void expect_refused(const nlohmann::json& state, const std::string& words) {
  Function target;
  const auto before = target.config();
  try {
    target.device.load_state(state, "test function");
    FAIL() << "loaded: " << state.dump();
  } catch (const StateError& error) {
    EXPECT_NE(std::string(error.what()).find(words), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("test function"), std::string::npos) << error.what();
  }
  EXPECT_EQ(target.config(), before);
}

TEST(PciDeviceState, HostileStatesAreRefusedWithNothingChanged) {
  Function source;
  program(source);
  const nlohmann::json good = source.device.save_state();
  const std::string hex = good["config"].get<std::string>();

  expect_refused(nlohmann::json::object(), "lacks 'config'");
  expect_refused({{"config", 7}}, "not a hex string");
  expect_refused({{"config", "zz" + hex.substr(2)}}, "not a hex string");
  expect_refused({{"config", hex.substr(0, hex.size() - 2)}}, "255 bytes");
  // Another vendor id (bytes 0-1).
  expect_refused({{"config", "4321" + hex.substr(4)}}, "vendor id 2143");
  // Another class code (bytes 9-11).
  std::string other_class = hex;
  other_class.replace(2 * kClassCodeOffset + 4, 2, "01");
  expect_refused({{"config", other_class}}, "class code");
  // Another subsystem id.
  std::string other_subsystem = hex;
  other_subsystem.replace(2 * kSubsystemIdOffset, 2, "00");
  expect_refused({{"config", other_subsystem}}, "subsystem id");
  // A read-only byte of the capability (another layout).
  std::string other_layout = hex;
  other_layout.replace(2 * (kFirstCapabilityOffset + 2), 2, "99");
  expect_refused({{"config", other_layout}}, "read-only");
}

TEST(PciDeviceState, AStateOfAnotherDeviceIsRefused) {
  Function source(PciIds{0x1234, 0x9999, 0x03, 0x020000, 0xabcd, 0xef01, 1});
  expect_refused(source.device.save_state(), "device id 9999");
}

class FakeMsix : public MsixInterrupts {
 public:
  void update(uint16_t vector, const MsixMessage& message) override { routes[vector] = message; ++updates; }
  void fire(uint16_t vector, const MsixMessage& message) override { fires.emplace_back(vector, message); }
  std::map<uint16_t, MsixMessage> routes;
  int updates = 0;
  std::vector<std::pair<uint16_t, MsixMessage>> fires;
};

void write_entry(MsixTable& table, uint16_t vector, uint64_t address, uint32_t data, bool masked) {
  auto put = [&](uint32_t at, uint32_t value) {
    const uint8_t b[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                          static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
    table.write_table(uint64_t{vector} * kMsixEntrySize + at, b);
  };
  put(0, static_cast<uint32_t>(address));
  put(4, static_cast<uint32_t>(address >> 32));
  put(8, data);
  put(12, masked ? kMsixVectorControlMask : 0);
}

TEST(MsixTableState, RoundTripKeepsPendingBitsAndRoutesDeliverableVectors) {
  auto source_backend = std::make_shared<FakeMsix>();
  MsixTable source(4, source_backend);
  source.set_control(kMsixControlEnable);
  write_entry(source, 0, 0xfee00000, 0x41, false);
  write_entry(source, 1, 0xfee01000, 0x42, false);
  write_entry(source, 2, 0xfee02000, 0x43, true);
  write_entry(source, 3, 0xfee03000, 0x44, true);
  EXPECT_TRUE(source.signal(2));  // masked: pending
  ASSERT_TRUE(source.pending(2));
  const nlohmann::json state = source.save_state();

  auto backend = std::make_shared<FakeMsix>();
  MsixTable target(4, backend);
  target.load_state(state, "test table");
  EXPECT_TRUE(target.enabled());
  EXPECT_EQ(backend->updates, 2);  // vectors 0 and 1 can deliver; 2 and 3 are masked
  EXPECT_EQ(backend->routes[0], (MsixMessage{0xfee00000, 0x41}));
  EXPECT_EQ(backend->routes[1], (MsixMessage{0xfee01000, 0x42}));
  EXPECT_TRUE(backend->fires.empty());
  EXPECT_TRUE(target.pending(2));
  EXPECT_FALSE(target.pending(3));
  EXPECT_TRUE(target.masked(2));
  EXPECT_EQ(target.message(3), (MsixMessage{0xfee03000, 0x44}));
  uint8_t pba[8] = {};
  target.read_pba(0, pba);
  EXPECT_EQ(pba[0], 0x04);
  EXPECT_EQ(target.save_state(), state);

  // Unmasking the pending vector delivers it, as it would have before the save.
  write_entry(target, 2, 0xfee02000, 0x43, false);
  ASSERT_EQ(backend->fires.size(), 1u);
  EXPECT_EQ(backend->fires[0].first, 2);
  EXPECT_FALSE(target.pending(2));
}

TEST(MsixTableState, AFunctionMaskedTableRoutesNothingOnLoad) {
  MsixTable source(2, nullptr);
  source.set_control(kMsixControlEnable | kMsixControlFunctionMask);
  write_entry(source, 0, 0xfee00000, 0x41, false);
  source.signal(0);
  auto backend = std::make_shared<FakeMsix>();
  MsixTable target(2, backend);
  target.load_state(source.save_state(), "test table");
  EXPECT_EQ(backend->updates, 0);
  EXPECT_TRUE(target.pending(0));
  target.set_control(kMsixControlEnable);  // the guest lifts the function mask
  EXPECT_EQ(backend->updates, 1);
  ASSERT_EQ(backend->fires.size(), 1u);
  EXPECT_EQ(backend->fires[0].first, 0);
}

TEST(MsixTableState, HostileStatesAreRefusedWithNothingChanged) {
  MsixTable source(2, nullptr);
  source.set_control(kMsixControlEnable);
  write_entry(source, 0, 0xfee00000, 0x41, false);
  const nlohmann::json good = source.save_state();

  auto refused = [&](nlohmann::json state, const std::string& words) {
    auto backend = std::make_shared<FakeMsix>();
    MsixTable target(2, backend);
    try {
      target.load_state(state, "test table");
      ADD_FAILURE() << "loaded: " << state.dump();
    } catch (const StateError& error) {
      EXPECT_NE(std::string(error.what()).find(words), std::string::npos) << error.what();
    }
    EXPECT_FALSE(target.enabled());
    EXPECT_EQ(backend->updates, 0);
    EXPECT_TRUE(target.masked(0));
    EXPECT_EQ(target.message(0), MsixMessage{});
  };
  nlohmann::json state = good;
  state["entries"].push_back(good["entries"][0]);
  refused(state, "has 3 vectors");
  state = good;
  state["entries"][1]["data"] = 0x100000000ULL;
  refused(state, "'data'");
  state = good;
  state["entries"][0]["pending"] = true;  // vector 0 can deliver
  refused(state, "'pending'");
  state = good;
  state["entries"][1].erase("masked");
  refused(state, "lacks 'masked'");
  state = good;
  state["enabled"] = 1;
  refused(state, "'enabled'");
  state = good;
  state["entries"] = "none";
  refused(state, "'entries'");
}

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
  uint8_t b[4];
  device.read(offset, b);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

TEST(PciHotplugControllerState, RoundTripKeepsTheBitsTheGuestHasNotRead) {
  PciHotplugController source(std::make_shared<EdgeCounter>(), [](int) {});
  source.announce_added(3);
  source.request_removal(5);
  source.request_removal(31);
  const nlohmann::json state = source.save_state();

  auto line = std::make_shared<EdgeCounter>();
  PciHotplugController target(line, [](int) {});
  target.load_state(state);
  EXPECT_EQ(line->edges, 0);  // the pending edge is the interrupt controller's to restore
  EXPECT_EQ(read32(target, PciHotplugController::kAddedOffset), 1u << 3);
  EXPECT_EQ(read32(target, PciHotplugController::kRemovalOffset), (1u << 5) | (1u << 31));
  EXPECT_EQ(read32(target, PciHotplugController::kAddedOffset), 0u);
}

TEST(PciHotplugControllerState, HostileStatesAreRefusedWithNothingChanged) {
  for (const nlohmann::json& state : {nlohmann::json{{"added", 1}, {"removals", 0}},
                                      nlohmann::json{{"added", 4}, {"removals", 0x100000000ULL}},
                                      nlohmann::json{{"added", 4}, {"removals", -4}}, nlohmann::json{{"added", 4}}}) {
    PciHotplugController target(std::make_shared<EdgeCounter>(), [](int) {});
    target.announce_added(7);
    EXPECT_THROW(target.load_state(state), StateError) << state.dump();
    EXPECT_EQ(read32(target, PciHotplugController::kAddedOffset), 1u << 7);
  }
}

}  // namespace
}  // namespace kdom::devices::pci
