// Tests of saving and restoring the virtio PCI transport: a device started by its driver,
// saved in the middle of its work and loaded into a freshly built transport, which starts it
// again and serves its queue from the saved ring indices; a device not yet started; and
// hostile states refused with the transport and the device unchanged.
#include "devices/virtio/virtio_pci.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "snapshot/state_json.h"

namespace kdom::devices::virtio {
namespace {

using namespace common;
using snapshot::StateError;

constexpr uint64_t kFeatureA = 1ULL << 0;
constexpr uint64_t kOffered = kFeatureA | kFeatureRingEventIdx | kFeatureVersion1;
constexpr uint16_t kQueueSizeUsed = 8;
// Queue 0's rings, and the buffers its chains point at.
constexpr uint64_t kDescTable = 0x10000;
constexpr uint64_t kAvailRing = 0x11000;
constexpr uint64_t kUsedRing = 0x12000;
constexpr uint64_t kBuffers = 0x20000;

// A device whose own state is one counter; loading a state whose "counter" is "bad" fails.
class StatefulDevice : public VirtioDevice {
 public:
  explicit StatefulDevice(DeviceType kind = DeviceType::kEntropy) : kind_(kind) {}
  DeviceType type() const override { return kind_; }
  uint64_t offered_features() const override { return kOffered; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }
  void read_config(uint64_t, std::span<uint8_t> data) const override { std::fill(data.begin(), data.end(), 0); }
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  void activate(const GuestMemory&, uint64_t features, std::vector<std::shared_ptr<Virtqueue>> queues_in,
                QueueInterrupt queue_interrupt_in, ConfigInterrupt config_interrupt_in) override {
    ++activations;
    negotiated = features;
    queues = std::move(queues_in);
    queue_interrupt = std::move(queue_interrupt_in);
    config_interrupt = std::move(config_interrupt_in);
  }
  void notify_queue(uint16_t) override {}
  void reset() override {
    ++resets;
    queues.clear();
  }
  void quiesce() override { ++quiesces; }
  void resume() override { ++resumes; }
  nlohmann::json save_state() const override { return {{"counter", counter}}; }
  void load_state(const nlohmann::json& state) override {
    ++loads;
    counter = snapshot::state_u64(state, "counter", "stateful device");
  }

  DeviceType kind_;
  uint64_t counter = 0;
  int activations = 0, resets = 0, quiesces = 0, resumes = 0, loads = 0;
  uint64_t negotiated = 0;
  std::vector<std::shared_ptr<Virtqueue>> queues;
  QueueInterrupt queue_interrupt;
  ConfigInterrupt config_interrupt;
};

class FakeMsix : public pci::MsixInterrupts {
 public:
  void update(uint16_t vector, const pci::MsixMessage& message) override {
    routes[vector] = message;
    ++updates;
  }
  void fire(uint16_t vector, const pci::MsixMessage&) override { fires.push_back(vector); }
  std::map<uint16_t, pci::MsixMessage> routes;
  int updates = 0;
  std::vector<uint16_t> fires;
};

// One transport with its device and MSI-X backend, driven as a guest driver would.
struct Transport {
  explicit Transport(const GuestMemory& memory, DeviceType kind = DeviceType::kEntropy)
      : device(std::make_shared<StatefulDevice>(kind)), pci(device, memory, msix) {}

  uint64_t bar_read(uint64_t offset, size_t size) {
    uint8_t b[8] = {};
    pci.read(offset, std::span<uint8_t>(b, size));
    uint64_t value = 0;
    for (size_t i = 0; i < size; ++i) value |= uint64_t{b[i]} << (8 * i);
    return value;
  }
  void bar_write(uint64_t offset, size_t size, uint64_t value) {
    uint8_t b[8];
    for (size_t i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(value >> (8 * i));
    pci.write(offset, std::span<const uint8_t>(b, size));
  }
  void config_write(uint32_t offset, size_t size, uint32_t value) {
    uint8_t b[4];
    for (size_t i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(value >> (8 * i));
    pci.write_config(offset, std::span<const uint8_t>(b, size));
  }
  std::vector<uint8_t> config_space() {
    std::vector<uint8_t> bytes(pci::kConfigSpaceSize);
    pci.read_config(0, bytes);
    return bytes;
  }
  void set_vector(uint16_t vector, uint64_t address, uint32_t data, bool masked) {
    const uint64_t entry = VirtioPci::kMsixTableOffset + uint64_t{vector} * pci::kMsixEntrySize;
    bar_write(entry, 8, address);
    bar_write(entry + 8, 4, data);
    bar_write(entry + 12, 4, masked ? 1 : 0);
  }
  // Up to FEATURES_OK, queue 0 configured with vector 1, the config vector 0, MSI-X on.
  void set_up(uint64_t features) {
    config_write(pci::kCommandOffset, 2, pci::kCommandMemorySpace | pci::kCommandBusMaster);
    pci.set_bar_address(VirtioPci::kBarIndex, 0xe0000000);
    config_write(pci.msix_capability_offset() + 2u, 2, pci::kMsixControlEnable);
    set_vector(0, 0xfee00000, 0x30, true);
    set_vector(1, 0xfee00000, 0x31, false);
    bar_write(kDeviceStatus, 1, kStatusAcknowledge | kStatusDriver);
    bar_write(kDriverFeatureSelect, 4, 0);
    bar_write(kDriverFeature, 4, features & 0xffffffff);
    bar_write(kDriverFeatureSelect, 4, 1);
    bar_write(kDriverFeature, 4, features >> 32);
    bar_write(kDeviceStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    bar_write(kMsixConfig, 2, 0);
    bar_write(kQueueSelect, 2, 0);
    bar_write(kQueueSize, 2, kQueueSizeUsed);
    bar_write(kQueueMsixVector, 2, 1);
    bar_write(kQueueDesc, 8, kDescTable);
    bar_write(kQueueDriver, 8, kAvailRing);
    bar_write(kQueueDevice, 8, kUsedRing);
    bar_write(kQueueEnable, 2, 1);
  }
  void driver_ok() {
    bar_write(kDeviceStatus, 1, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

  std::shared_ptr<StatefulDevice> device;
  std::shared_ptr<FakeMsix> msix = std::make_shared<FakeMsix>();
  VirtioPci pci;
};

class VirtioPciStateTest : public ::testing::Test {
 protected:
  GuestMemory memory{std::vector<GuestRange>{{0, 1 << 20}}};

  // The driver makes chain `head` (one readable descriptor) available at ring position `at`.
  void make_available(uint16_t head, uint16_t at) {
    memory.write_object(kDescTable + 16u * head, VirtqDescriptor{kBuffers + 0x100u * head, 0x100, 0, 0});
    memory.write_object(kAvailRing + 4 + 2u * (at % kQueueSizeUsed), head);
    memory.write_object<uint16_t>(kAvailRing + 2, static_cast<uint16_t>(at + 1));
  }
  uint16_t used_idx() { return memory.read_object<uint16_t>(kUsedRing + 2); }

  // A started device that has taken chains 0-2 and given back 0 and 1; vector 0 masked with
  // a config interrupt pending.
  nlohmann::json busy_state() {
    Transport source(memory);
    source.set_up(kOffered);
    source.driver_ok();
    EXPECT_EQ(source.device->activations, 1);
    for (uint16_t head = 0; head < 3; ++head) make_available(head, head);
    auto& queue = *source.device->queues.at(0);
    for (uint16_t head = 0; head < 3; ++head) EXPECT_EQ(queue.pop()->head, head);
    queue.push_used(0, 0);
    queue.push_used(1, 0);
    source.device->config_interrupt();  // vector 0 is masked: pending
    EXPECT_TRUE(source.pci.msix().pending(0));
    source.device->counter = 42;
    source.pci.quiesce();
    EXPECT_EQ(source.device->quiesces, 1);
    nlohmann::json state = source.pci.save_state();
    source.pci.resume();
    EXPECT_EQ(source.device->resumes, 1);
    config_space_ = source.config_space();
    return state;
  }
  std::vector<uint8_t> config_space_;
};

TEST_F(VirtioPciStateTest, SavedStateNamesTheRingIndices) {
  const nlohmann::json state = busy_state();
  EXPECT_EQ(state["status"], kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(state["driver_features"], kOffered);
  EXPECT_EQ(state["queues"][0]["ring"]["next_avail"], 3);
  EXPECT_EQ(state["queues"][0]["ring"]["next_used"], 2);
  EXPECT_TRUE(state["queues"][1]["ring"].is_null());
  EXPECT_EQ(state["device"]["counter"], 42);
}

TEST_F(VirtioPciStateTest, ALoadedTransportStartsTheDeviceAndServesFromTheSavedIndices) {
  const nlohmann::json state = busy_state();
  Transport target(memory);
  target.pci.load_state(state, "test device");

  EXPECT_EQ(target.device->loads, 1);
  EXPECT_EQ(target.device->counter, 42u);
  EXPECT_EQ(target.device->activations, 1);
  EXPECT_EQ(target.device->negotiated, kOffered);
  ASSERT_EQ(target.device->queues.size(), 2u);
  ASSERT_TRUE(target.device->queues[0]);
  EXPECT_FALSE(target.device->queues[1]);
  EXPECT_TRUE(target.pci.active());
  EXPECT_EQ(target.config_space(), config_space_);
  EXPECT_EQ(target.pci.bar_address(VirtioPci::kBarIndex), 0xe0000000u);
  EXPECT_EQ(target.bar_read(kDeviceStatus, 1), state["status"].get<uint64_t>());
  bool all_queue_fields = true;
  target.bar_write(kQueueSelect, 2, 0);
  all_queue_fields &= target.bar_read(kQueueSize, 2) == kQueueSizeUsed;
  all_queue_fields &= target.bar_read(kQueueMsixVector, 2) == 1;
  all_queue_fields &= target.bar_read(kQueueEnable, 2) == 1;
  all_queue_fields &= target.bar_read(kQueueDesc, 8) == kDescTable;
  all_queue_fields &= target.bar_read(kQueueDriver, 8) == kAvailRing;
  all_queue_fields &= target.bar_read(kQueueDevice, 8) == kUsedRing;
  EXPECT_TRUE(all_queue_fields);
  // MSI-X: vector 1 routed again, vector 0 still masked and pending.
  EXPECT_EQ(target.msix->updates, 1);
  EXPECT_EQ(target.msix->routes[1], (pci::MsixMessage{0xfee00000, 0x31}));
  EXPECT_TRUE(target.pci.msix().pending(0));
  EXPECT_EQ(target.pci.save_state(), state);

  // Chain 2 is still the device's; the next the driver makes available is chain 3.
  auto& queue = *target.device->queues[0];
  make_available(3, 3);
  const auto next = queue.pop();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->head, 3);
  EXPECT_FALSE(queue.pop());
  queue.push_used(2, 0);
  EXPECT_EQ(used_idx(), 3);
  EXPECT_EQ(memory.read_object<uint32_t>(kUsedRing + 4 + 8 * 2), 2u);  // used ring entry 2 is chain 2
  target.device->queue_interrupt(0);
  EXPECT_EQ(target.msix->fires, std::vector<uint16_t>{1});

  // Unmasking the config vector delivers what was pending at the save.
  target.set_vector(0, 0xfee00000, 0x30, false);
  EXPECT_EQ(target.msix->fires, (std::vector<uint16_t>{1, 0}));
  target.pci.quiesce();
  target.pci.resume();
  EXPECT_EQ(target.device->quiesces, 1);
  EXPECT_EQ(target.device->resumes, 1);
}

TEST_F(VirtioPciStateTest, ADeviceNotYetStartedIsLoadedWithoutStarting) {
  Transport source(memory);
  source.set_up(kOffered);  // FEATURES_OK, queues configured, no DRIVER_OK yet
  source.pci.quiesce();     // not active: the device is not asked
  EXPECT_EQ(source.device->quiesces, 0);
  const nlohmann::json state = source.pci.save_state();
  EXPECT_TRUE(state["queues"][0]["ring"].is_null());

  Transport target(memory);
  target.pci.load_state(state, "test device");
  EXPECT_EQ(target.device->activations, 0);
  EXPECT_EQ(target.device->loads, 1);
  EXPECT_FALSE(target.pci.active());
  // The driver carries on: DRIVER_OK starts it.
  target.driver_ok();
  EXPECT_EQ(target.device->activations, 1);
  ASSERT_TRUE(target.device->queues.at(0));
  EXPECT_EQ(target.device->queues[0]->config().size, kQueueSizeUsed);
}

TEST_F(VirtioPciStateTest, ADeviceThatNeedsResetIsNotStarted) {
  Transport source(memory);
  source.set_up(kOffered);
  source.bar_write(kQueueSize, 2, 32);  // above the maximum: DRIVER_OK fails the device
  source.driver_ok();
  ASSERT_TRUE(source.pci.device_status() & kStatusDeviceNeedsReset);
  Transport target(memory);
  target.pci.load_state(source.pci.save_state(), "test device");
  EXPECT_EQ(target.device->activations, 0);
  EXPECT_TRUE(target.pci.device_status() & kStatusDeviceNeedsReset);
}

TEST_F(VirtioPciStateTest, LoadingIntoAUsedTransportIsRefused) {
  const nlohmann::json state = busy_state();
  Transport target(memory);
  target.bar_write(kDeviceStatus, 1, kStatusAcknowledge);
  EXPECT_THROW(target.pci.load_state(state, "test device"), Error);
  EXPECT_EQ(target.device->loads, 0);
}

class HostileStateTest : public VirtioPciStateTest {
 protected:
  // Loads `state` into a fresh transport: refused with a StateError naming the device and
  // holding `words`, the transport and the device unchanged.
  void expect_refused(const nlohmann::json& state, const std::string& words,
                      DeviceType kind = DeviceType::kEntropy) {
    Transport target(memory, kind);
    const auto config_before = target.config_space();
    const nlohmann::json state_before = target.pci.save_state();
    try {
      target.pci.load_state(state, "test device");
      ADD_FAILURE() << "loaded a state expected to hold " << words;
    } catch (const StateError& error) {
      EXPECT_NE(std::string(error.what()).find(words), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find("device"), std::string::npos) << error.what();
    }
    EXPECT_EQ(target.config_space(), config_before);
    EXPECT_EQ(target.pci.save_state(), state_before);
    EXPECT_EQ(target.device->activations, 0);
    EXPECT_EQ(target.device->counter, 0u);
    EXPECT_EQ(target.msix->updates, 0);
    EXPECT_EQ(target.pci.bar_address(VirtioPci::kBarIndex), 0u);
  }
};

TEST_F(HostileStateTest, BadPciConfigIsRefused) {
  const nlohmann::json good = busy_state();
  nlohmann::json state = good;
  state["pci"]["config"] = "xy" + good["pci"]["config"].get<std::string>().substr(2);
  expect_refused(state, "not a hex string");
  state = good;
  state["pci"]["config"] = "0000" + good["pci"]["config"].get<std::string>().substr(4);  // vendor 0
  expect_refused(state, "vendor id");
  state = good;
  state.erase("pci");
  expect_refused(state, "lacks 'pci'");
}

TEST_F(HostileStateTest, AnotherKindOfDeviceIsRefused) {
  expect_refused(busy_state(), "'device_type'", DeviceType::kConsole);
}

TEST_F(HostileStateTest, QueueFieldsAreChecked) {
  const nlohmann::json good = busy_state();
  nlohmann::json state = good;
  state["queues"][0]["size"] = 32;  // maximum 16
  expect_refused(state, "'size' is 32 (maximum 16)");
  state = good;
  state["queues"][0]["size"] = 0;
  expect_refused(state, "'size' is 0");
  state = good;
  state["queues"][0]["size"] = 12;  // not a power of two
  expect_refused(state, "queue 0");
  state = good;
  state["queues"][0]["msix_vector"] = 7;  // the table has 3
  expect_refused(state, "'msix_vector' is vector 7");
  state = good;
  state["msix_config"] = 3;
  expect_refused(state, "'msix_config' is vector 3");
  state = good;
  state["queues"][0]["desc"] = 0x7ffff000;  // outside guest RAM
  expect_refused(state, "queue 0");
  state = good;
  state["queues"][0].erase("ring");
  expect_refused(state, "lacks 'ring'");
  state = good;
  state["queues"][1]["ring"] = {{"next_avail", 0}, {"next_used", 0}};  // queue 1 is not served
  expect_refused(state, "'ring' is given");
  state = good;
  state["queues"][0]["ring"]["next_used"] = 70000;
  expect_refused(state, "'next_used'");
  state = good;
  state["queues"].erase(1);
  expect_refused(state, "'queues' has 1 queues");
  state = good;
  state["queues"][0]["enabled"] = "yes";
  expect_refused(state, "'enabled'");
}

TEST_F(HostileStateTest, StatusAndFeaturesAreChecked) {
  const nlohmann::json good = busy_state();
  nlohmann::json state = good;
  state["status"] = kStatusAcknowledge | kStatusDriver | kStatusDriverOk;
  expect_refused(state, "DRIVER_OK without FEATURES_OK");
  state = good;
  state["driver_features"] = kOffered | (1ULL << 5);
  expect_refused(state, "does not offer");
  state = good;
  state["driver_features"] = kFeatureA;
  expect_refused(state, "VERSION_1");
  state = good;
  state["status"] = 0x1f;  // 0x10 is no status bit
  expect_refused(state, "'status'");
  state = good;
  state["status"] = 256;
  expect_refused(state, "'status'");
  state = good;
  state["isr"] = 4;
  expect_refused(state, "'isr'");
}

TEST_F(HostileStateTest, MsixStateIsChecked) {
  const nlohmann::json good = busy_state();
  nlohmann::json state = good;
  state["msix"]["entries"].erase(2);
  expect_refused(state, "'entries' has 2 vectors");
  state = good;
  state["msix"]["enabled"] = false;  // config space says enabled
  expect_refused(state, "differ from its config space");
  state = good;
  state["msix"]["entries"][1]["pending"] = true;  // vector 1 can deliver
  expect_refused(state, "'pending'");
}

TEST_F(HostileStateTest, ABadDeviceStateLeavesTheTransportUnchanged) {
  nlohmann::json state = busy_state();
  state["device"]["counter"] = "bad";
  expect_refused(state, "stateful device");
  state.erase("device");
  expect_refused(state, "lacks 'device'");
}

}  // namespace
}  // namespace kdom::devices::virtio
