// Tests of the virtio modern PCI transport: a fake VirtioDevice behind VirtioPci, driven as a
// guest driver would through config space (capability walk, MSI-X control) and the BAR
// (common configuration, notifications, ISR, MSI-X table and PBA).
#include "devices/virtio/virtio_pci.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace kdom::devices::virtio {
namespace {

using namespace common;

constexpr uint64_t kFeatureA = 1ULL << 0;
constexpr uint64_t kFeatureB = 1ULL << 5;  // not offered

class FakeDevice : public VirtioDevice {
 public:
  DeviceType type() const override { return DeviceType::kEntropy; }
  uint64_t offered_features() const override { return kFeatureA | kFeatureRingEventIdx | kFeatureVersion1; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < config.size() ? config[offset + i] : 0;
  }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) {
      if (offset + i < config.size()) config[offset + i] = data[i];
    }
  }
  void activate(const GuestMemory&, uint64_t features, std::vector<std::shared_ptr<Virtqueue>> queues_in,
                QueueInterrupt queue_interrupt_in, ConfigInterrupt config_interrupt_in) override {
    ++activations;
    negotiated = features;
    queues = std::move(queues_in);
    queue_interrupt = std::move(queue_interrupt_in);
    config_interrupt = std::move(config_interrupt_in);
    if (fail_activation) throw Error("fake device cannot start");
  }
  void notify_queue(uint16_t queue_index) override { notified.push_back(queue_index); }
  void reset() override {
    ++resets;
    queues.clear();
    queue_interrupt = nullptr;
    config_interrupt = nullptr;
  }

  std::vector<uint8_t> config{1, 2, 3, 4, 5, 6, 7, 8};
  int activations = 0;
  int resets = 0;
  bool fail_activation = false;
  uint64_t negotiated = 0;
  std::vector<std::shared_ptr<Virtqueue>> queues;
  QueueInterrupt queue_interrupt;
  ConfigInterrupt config_interrupt;
  std::vector<uint16_t> notified;
};

class FakeMsix : public pci::MsixInterrupts {
 public:
  void update(uint16_t vector, const pci::MsixMessage& message) override {
    routes[vector] = message;
    ++updates;
  }
  void fire(uint16_t vector, const pci::MsixMessage& message) override { fires.emplace_back(vector, message); }
  std::map<uint16_t, pci::MsixMessage> routes;
  int updates = 0;
  std::vector<std::pair<uint16_t, pci::MsixMessage>> fires;
};

class FakeLine : public InterruptLine {
 public:
  void set_level(bool asserted) override { level = asserted; }
  bool level = false;
};

class VirtioPciTest : public ::testing::Test {
 protected:
  GuestMemory memory{std::vector<GuestRange>{{0, 1 << 20}}};
  std::shared_ptr<FakeDevice> device = std::make_shared<FakeDevice>();
  std::shared_ptr<FakeMsix> msix = std::make_shared<FakeMsix>();
  std::shared_ptr<FakeLine> line = std::make_shared<FakeLine>();
  VirtioPci pci{device, memory, msix, line};

  uint32_t config32(uint32_t offset) {
    uint8_t b[4];
    pci.read_config(offset, b);
    return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
  }
  void write_config16(uint32_t offset, uint16_t value) {
    const uint8_t b[2] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8)};
    pci.write_config(offset, b);
  }
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
  uint8_t status() { return static_cast<uint8_t>(bar_read(kDeviceStatus, 1)); }
  void set_status(uint8_t value) { bar_write(kDeviceStatus, 1, value); }
  void write_driver_features(uint64_t features) {
    bar_write(kDriverFeatureSelect, 4, 0);
    bar_write(kDriverFeature, 4, features & 0xffffffff);
    bar_write(kDriverFeatureSelect, 4, 1);
    bar_write(kDriverFeature, 4, features >> 32);
  }
  void negotiate(uint64_t features) {
    set_status(kStatusAcknowledge);
    set_status(kStatusAcknowledge | kStatusDriver);
    write_driver_features(features);
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  }
  // Queue `index` at 0x10000 * (index + 1): descriptors, then the driver and device areas.
  void configure_queue(uint16_t index, uint16_t size, uint16_t vector = pci::kMsixNoVector) {
    const uint64_t base = 0x10000 * (uint64_t{index} + 1);
    bar_write(kQueueSelect, 2, index);
    bar_write(kQueueSize, 2, size);
    bar_write(kQueueMsixVector, 2, vector);
    // Descriptor table as two 32-bit halves (as Linux writes it), the rings as 64-bit stores.
    bar_write(kQueueDesc, 4, base);
    bar_write(kQueueDesc + 4, 4, base >> 32);
    bar_write(kQueueDriver, 8, base + 0x1000);
    bar_write(kQueueDevice, 8, base + 0x2000);
    bar_write(kQueueEnable, 2, 1);
  }
  // FEATURES_OK and DRIVER_OK with queues 0 (16 entries) and 1 (8 entries).
  void go_live_with_two_queues() {
    negotiate(kFeatureVersion1);
    configure_queue(0, 16);
    configure_queue(1, 8);
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }
  // Writes to the notify addresses of queues 1 and 0, then of 2 (beyond the queues: ignored).
  void notify_queues_1_0_2() {
    bar_write(VirtioPci::notify_offset(1), 2, 1);
    bar_write(VirtioPci::notify_offset(0), 2, 0);
    bar_write(VirtioPci::notify_offset(2), 2, 2);
  }
  void enable_msix(bool function_mask = false) {
    const uint32_t control = pci.msix_capability_offset() + 2u;
    write_config16(control, static_cast<uint16_t>(pci::kMsixControlEnable | (function_mask ? pci::kMsixControlFunctionMask : 0)));
  }
  void program_vector(uint16_t vector, uint64_t address, uint32_t data, bool masked) {
    const uint64_t entry = VirtioPci::kMsixTableOffset + 16 * uint64_t{vector};
    bar_write(entry, 4, address & 0xffffffff);
    bar_write(entry + 4, 4, address >> 32);
    bar_write(entry + 8, 4, data);
    bar_write(entry + 12, 4, masked ? 1 : 0);
  }
  uint64_t pba() { return bar_read(pci.msix_pba_offset(), 8); }
};

TEST_F(VirtioPciTest, IdsAndBar) {
  EXPECT_EQ(config32(0), 0x1044u << 16 | 0x1af4u);  // 0x1040 + entropy (4)
  EXPECT_EQ(config32(8) & 0xff, 1u);                 // revision 1
  EXPECT_EQ(config32(0x2c), uint32_t{kVirtioPciSubsystemId} << 16 | kVirtioPciVendorId);
  EXPECT_EQ(config32(0x3c) >> 8 & 0xff, 1u);  // INTA#
  // BAR 0 is a 64-bit memory BAR of bar_size() bytes.
  EXPECT_EQ(config32(0x10), 0x4u);
  const uint8_t ones[4] = {0xff, 0xff, 0xff, 0xff};
  pci.write_config(0x10, ones);
  EXPECT_EQ(config32(0x10), static_cast<uint32_t>(~(pci.bar_size() - 1)) | 0x4u);
  EXPECT_GE(pci.bar_size(), 0x8000u);
}

TEST_F(VirtioPciTest, CapabilitiesFoundByWalkingConfigSpace) {
  ASSERT_NE(config32(4) >> 16 & pci::kStatusCapabilityList, 0u);
  std::map<uint8_t, uint32_t> virtio_caps;  // cfg_type -> offset
  std::optional<uint32_t> msix_cap;
  uint32_t pointer = config32(pci::kCapabilityPointerOffset) & 0xff;
  for (int guard = 0; pointer != 0 && guard < 48; ++guard) {
    const uint32_t header = config32(pointer);
    if ((header & 0xff) == pci::kCapabilityIdVendor) virtio_caps[header >> 24 & 0xff] = pointer;
    if ((header & 0xff) == pci::kCapabilityIdMsix) msix_cap = pointer;
    pointer = header >> 8 & 0xff;
  }
  ASSERT_EQ(virtio_caps.size(), 5u);
  struct Expect {
    uint8_t type;
    uint64_t offset;
    uint32_t min_length;
  };
  for (const Expect& e : {Expect{kCapCommonCfg, VirtioPci::kCommonConfigOffset, kSize},
                          Expect{kCapNotifyCfg, VirtioPci::kNotifyOffset, 8},
                          Expect{kCapIsrCfg, VirtioPci::kIsrOffset, 1},
                          Expect{kCapDeviceCfg, VirtioPci::kDeviceConfigOffset, 8}}) {
    SCOPED_TRACE(static_cast<int>(e.type));
    ASSERT_TRUE(virtio_caps.count(e.type));
    const uint32_t cap = virtio_caps[e.type];
    EXPECT_EQ(config32(cap) >> 16 & 0xff, e.type == kCapNotifyCfg ? 20u : 16u);  // cap_len
    EXPECT_EQ(config32(cap + 4) & 0xff, 0u);                                     // BAR 0
    EXPECT_EQ(config32(cap + 8), e.offset);
    EXPECT_GE(config32(cap + 12), e.min_length);
    EXPECT_LE(e.offset + config32(cap + 12), pci.bar_size());
  }
  EXPECT_EQ(config32(virtio_caps[kCapNotifyCfg] + 16), VirtioPci::kNotifyOffMultiplier);
  ASSERT_TRUE(msix_cap.has_value());
  EXPECT_EQ(*msix_cap, pci.msix_capability_offset());
  EXPECT_EQ(config32(*msix_cap) >> 16 & 0x7ff, 2u);  // 3 vectors: config + 2 queues
  EXPECT_EQ(config32(*msix_cap + 4), VirtioPci::kMsixTableOffset);  // BIR 0
  EXPECT_EQ(config32(*msix_cap + 8), pci.msix_pba_offset());
}

TEST_F(VirtioPciTest, DeviceFeaturesAndCounts) {
  bar_write(kDeviceFeatureSelect, 4, 0);
  EXPECT_EQ(bar_read(kDeviceFeature, 4), (kFeatureA | kFeatureRingEventIdx) & 0xffffffff);
  bar_write(kDeviceFeatureSelect, 4, 1);
  EXPECT_EQ(bar_read(kDeviceFeature, 4), 1u);  // VERSION_1
  bar_write(kDeviceFeatureSelect, 4, 2);
  EXPECT_EQ(bar_read(kDeviceFeature, 4), 0u);
  EXPECT_EQ(bar_read(kNumQueues, 2), 2u);
  bar_write(kNumQueues, 2, 7);
  EXPECT_EQ(bar_read(kNumQueues, 2), 2u);
  bar_write(kQueueSelect, 2, 1);
  EXPECT_EQ(bar_read(kQueueSize, 2), 8u);
  EXPECT_EQ(bar_read(kQueueNotifyOff, 2), 1u);
  bar_write(kQueueSelect, 2, 2);
  EXPECT_EQ(bar_read(kQueueSize, 2), 0u);  // no such queue
}

TEST_F(VirtioPciTest, FeatureNegotiationAccepts) {
  negotiate(kFeatureA | kFeatureVersion1);
  EXPECT_EQ(status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(pci.driver_features(), kFeatureA | kFeatureVersion1);
  // Once FEATURES_OK is set, driver features are frozen.
  write_driver_features(kFeatureRingEventIdx | kFeatureVersion1);
  EXPECT_EQ(pci.driver_features(), kFeatureA | kFeatureVersion1);
}

TEST_F(VirtioPciTest, FeatureNegotiationRefusesUnofferedBits) {
  negotiate(kFeatureB | kFeatureVersion1);
  EXPECT_EQ(status() & kStatusFeaturesOk, 0);
}

TEST_F(VirtioPciTest, FeatureNegotiationRefusesWithoutVersion1) {
  negotiate(kFeatureA);
  EXPECT_EQ(status() & kStatusFeaturesOk, 0);
}

TEST_F(VirtioPciTest, DriverOkWithoutFeaturesOkNeedsReset) {
  set_status(kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
  EXPECT_NE(status() & kStatusDeviceNeedsReset, 0);
  EXPECT_EQ(device->activations, 0);
}

TEST_F(VirtioPciTest, ADriverThatKeepsFailingCannotFloodTheLog) {
  testing::internal::CaptureStderr();
  for (int i = 0; i < 100; ++i) {
    set_status(0);  // reset
    set_status(kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
    ASSERT_NE(status() & kStatusDeviceNeedsReset, 0);
  }
  const std::string out = testing::internal::GetCapturedStderr();
  size_t lines = 0;
  for (char c : out) lines += c == '\n';
  EXPECT_EQ(lines, 11u) << out;  // ten failures, and the line saying later ones are only counted
  EXPECT_NE(out.find("later ones are only counted"), std::string::npos);
}

TEST_F(VirtioPciTest, QueueConfigurationAndActivation) {
  negotiate(kFeatureRingEventIdx | kFeatureVersion1);
  configure_queue(0, 16);
  bar_write(kQueueSelect, 2, 0);
  EXPECT_EQ(bar_read(kQueueSize, 2), 16u);
  EXPECT_EQ(bar_read(kQueueDesc, 8), 0x10000u);
  EXPECT_EQ(bar_read(kQueueDriver, 4), 0x11000u);
  EXPECT_EQ(bar_read(kQueueDevice, 8), 0x12000u);
  EXPECT_EQ(bar_read(kQueueEnable, 2), 1u);
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(status() & kStatusDeviceNeedsReset, 0);
  ASSERT_EQ(device->activations, 1);
  EXPECT_EQ(device->negotiated, kFeatureRingEventIdx | kFeatureVersion1);
  ASSERT_EQ(device->queues.size(), 2u);
  ASSERT_NE(device->queues[0], nullptr);
  EXPECT_EQ(device->queues[1], nullptr);  // not enabled
  EXPECT_EQ(device->queues[0]->config(), (VirtqueueConfig{16, 0x10000, 0x11000, 0x12000, true, false}));
  // Queue configuration is frozen after DRIVER_OK.
  bar_write(kQueueSelect, 2, 0);
  bar_write(kQueueSize, 2, 4);
  bar_write(kQueueDesc, 8, 0x50000);
  EXPECT_EQ(bar_read(kQueueSize, 2), 16u);
  EXPECT_EQ(bar_read(kQueueDesc, 8), 0x10000u);
}

// Hot-unplug: the device stops as on a reset and never starts again; a driver still bound can
// reset it (status reads back 0, as its removal path waits for).
TEST_F(VirtioPciTest, AnUnpluggedDeviceStopsAndNeverStartsAgain) {
  go_live_with_two_queues();
  ASSERT_EQ(device->activations, 1);
  pci.unplug();
  EXPECT_EQ(device->resets, 1);
  EXPECT_EQ(status(), 0);
  notify_queues_1_0_2();
  EXPECT_TRUE(device->notified.empty());
  go_live_with_two_queues();
  EXPECT_EQ(device->activations, 1);
  set_status(0);
  EXPECT_EQ(status(), 0);
}

TEST_F(VirtioPciTest, SmallerQueueSizeIsUsed) {
  negotiate(kFeatureVersion1);
  configure_queue(1, 4);
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  ASSERT_EQ(device->activations, 1);
  ASSERT_NE(device->queues[1], nullptr);
  EXPECT_EQ(device->queues[1]->config().size, 4u);
  EXPECT_EQ(device->queues[1]->config().descriptor_table, 0x20000u);
}

TEST_F(VirtioPciTest, NotifyCallsNotifyQueue) {
  bar_write(VirtioPci::notify_offset(1), 2, 1);
  EXPECT_TRUE(device->notified.empty());  // not live yet
  go_live_with_two_queues();
  notify_queues_1_0_2();
  EXPECT_EQ(device->notified, (std::vector<uint16_t>{1, 0}));
}

// With a forwarder (the VMM passes MMIO-exit notifications to the queue's eventfd), a write
// to the notify region reaches the forwarder, never the device in the writing thread.
TEST_F(VirtioPciTest, NotifyGoesToTheForwarderWhenOneIsSet) {
  std::vector<uint16_t> forwarded;
  pci.set_notify_forwarder([&](uint16_t queue) { forwarded.push_back(queue); });
  go_live_with_two_queues();
  notify_queues_1_0_2();
  EXPECT_EQ(forwarded, (std::vector<uint16_t>{1, 0}));
  EXPECT_TRUE(device->notified.empty());
  pci.notify(1);  // the eventfd's reader calls notify()
  EXPECT_EQ(device->notified, (std::vector<uint16_t>{1}));
}

// The SIGQUIT dump: the transport's status, each live queue with its vector, the ISR.
TEST_F(VirtioPciTest, DescribeStateListsStatusQueuesAndVectors) {
  go_live_with_two_queues();
  const auto lines = pci.describe_state();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_THAT(lines[0], ::testing::HasSubstr("status=0xf"));
  EXPECT_THAT(lines[0], ::testing::HasSubstr("msix=off"));
  EXPECT_THAT(lines[1], ::testing::HasSubstr("queue 0 vector none: size=16 next_avail=0"));
  EXPECT_THAT(lines[2], ::testing::HasSubstr("queue 1 vector none: size=8"));
  EXPECT_THAT(lines[3], ::testing::HasSubstr("config vector none, isr=0"));
}

TEST_F(VirtioPciTest, BadQueueSetsNeedsResetAndRaisesConfigInterrupt) {
  enable_msix();
  program_vector(0, 0xfee00000, 0x41, false);
  negotiate(kFeatureVersion1);
  bar_write(kMsixConfig, 2, 0);
  configure_queue(0, 16);
  bar_write(kQueueSelect, 2, 0);
  bar_write(kQueueDesc, 8, 0x7fffff000);  // outside guest RAM
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_NE(status() & kStatusDeviceNeedsReset, 0);
  EXPECT_EQ(device->activations, 0);
  ASSERT_EQ(msix->fires.size(), 1u);
  EXPECT_EQ(msix->fires[0].first, 0);
  EXPECT_EQ(msix->fires[0].second, (pci::MsixMessage{0xfee00000, 0x41}));
  // The driver cannot clear NEEDS_RESET, only reset.
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_NE(status() & kStatusDeviceNeedsReset, 0);
  set_status(0);
  EXPECT_EQ(status(), 0);
}

TEST_F(VirtioPciTest, OversizedQueueSetsNeedsReset) {
  negotiate(kFeatureVersion1);
  configure_queue(1, 16);  // maximum 8
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_NE(status() & kStatusDeviceNeedsReset, 0);
  EXPECT_EQ(device->activations, 0);
}

TEST_F(VirtioPciTest, ActivationFailureSetsNeedsReset) {
  device->fail_activation = true;
  negotiate(kFeatureVersion1);
  configure_queue(0, 16);
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_NE(status() & kStatusDeviceNeedsReset, 0);
  // MSI-X is off: INTx with the config bit in the ISR, cleared by reading it.
  EXPECT_TRUE(line->level);
  EXPECT_EQ(bar_read(VirtioPci::kIsrOffset, 1), kIsrConfig);
  EXPECT_FALSE(line->level);
  EXPECT_EQ(bar_read(VirtioPci::kIsrOffset, 1), 0u);
  set_status(0);
  EXPECT_EQ(device->resets, 1);  // the device was told to stop
}

TEST_F(VirtioPciTest, MsixVectorAssignment) {
  bar_write(kMsixConfig, 2, 2);
  EXPECT_EQ(bar_read(kMsixConfig, 2), 2u);
  bar_write(kMsixConfig, 2, 3);  // the table has 3 entries
  EXPECT_EQ(bar_read(kMsixConfig, 2), pci::kMsixNoVector);
  bar_write(kQueueSelect, 2, 1);
  bar_write(kQueueMsixVector, 2, 1);
  EXPECT_EQ(bar_read(kQueueMsixVector, 2), 1u);
  bar_write(kQueueMsixVector, 2, 100);
  EXPECT_EQ(bar_read(kQueueMsixVector, 2), pci::kMsixNoVector);
}

TEST_F(VirtioPciTest, MsixTableEntriesAreStoredAndRouted) {
  program_vector(2, 0xfee01000, 0x4055, true);
  EXPECT_EQ(bar_read(VirtioPci::kMsixTableOffset + 32, 8), 0xfee01000u);
  EXPECT_EQ(bar_read(VirtioPci::kMsixTableOffset + 40, 4), 0x4055u);
  EXPECT_EQ(bar_read(VirtioPci::kMsixTableOffset + 44, 4), 1u);
  // Not routed while it cannot deliver (masked, MSI-X disabled); routed once it can.
  EXPECT_EQ(msix->updates, 0);
  bar_write(VirtioPci::kMsixTableOffset + 32 + 12, 4, 0);  // unmask
  EXPECT_EQ(msix->updates, 0);
  enable_msix();
  EXPECT_EQ(msix->updates, 1);
  EXPECT_EQ(msix->routes[2], (pci::MsixMessage{0xfee01000, 0x4055}));
  // Entries start masked.
  EXPECT_EQ(bar_read(VirtioPci::kMsixTableOffset + 12, 4), 1u);
  // Only the mask bit of vector control is writable; the PBA is read-only.
  bar_write(VirtioPci::kMsixTableOffset + 12, 4, 0xfffffffe);
  EXPECT_EQ(bar_read(VirtioPci::kMsixTableOffset + 12, 4), 0u);
  bar_write(pci.msix_pba_offset(), 8, ~uint64_t{0});
  EXPECT_EQ(pba(), 0u);
}

TEST_F(VirtioPciTest, MsixRouteFollowsTheMessageOncePerReprogramming) {
  enable_msix();
  program_vector(1, 0xfee00000, 0x31, false);
  const int first = msix->updates;
  EXPECT_EQ(msix->routes[1], (pci::MsixMessage{0xfee00000, 0x31}));
  // As Linux moves a vector: mask, rewrite address and data a word at a time, unmask. One
  // route, the final message, not one per half-written message.
  bar_write(VirtioPci::kMsixTableOffset + 16 + 12, 4, 1);
  program_vector(1, 0xfee02000, 0x52, true);
  EXPECT_EQ(msix->updates, first);
  bar_write(VirtioPci::kMsixTableOffset + 16 + 12, 4, 0);
  EXPECT_EQ(msix->updates, first + 1);
  EXPECT_EQ(msix->routes[1], (pci::MsixMessage{0xfee02000, 0x52}));
  // Unchanged: masking and unmasking again installs nothing.
  bar_write(VirtioPci::kMsixTableOffset + 16 + 12, 4, 1);
  bar_write(VirtioPci::kMsixTableOffset + 16 + 12, 4, 0);
  EXPECT_EQ(msix->updates, first + 1);
  // An unmasked entry rewritten in place is routed as it changes.
  bar_write(VirtioPci::kMsixTableOffset + 16 + 8, 4, 0x53);
  EXPECT_EQ(msix->updates, first + 2);
  EXPECT_EQ(msix->routes[1], (pci::MsixMessage{0xfee02000, 0x53}));
  // Changed under the function mask: routed when the function mask is lifted.
  enable_msix(true);
  program_vector(1, 0xfee03000, 0x54, false);
  EXPECT_EQ(msix->updates, first + 2);
  enable_msix(false);
  EXPECT_EQ(msix->updates, first + 3);
  EXPECT_EQ(msix->routes[1], (pci::MsixMessage{0xfee03000, 0x54}));
}

class VirtioPciActiveTest : public VirtioPciTest {
 protected:
  void SetUp() override {
    enable_msix();
    program_vector(0, 0xfee00000, 0x30, false);
    program_vector(1, 0xfee00000, 0x31, false);
    negotiate(kFeatureVersion1);
    bar_write(kMsixConfig, 2, 0);
    configure_queue(0, 16, 1);
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_EQ(device->activations, 1);
    ASSERT_TRUE(device->queue_interrupt);
  }
};

TEST_F(VirtioPciActiveTest, QueueInterruptFiresItsVector) {
  device->queue_interrupt(0);
  ASSERT_EQ(msix->fires.size(), 1u);
  EXPECT_EQ(msix->fires[0].first, 1);
  EXPECT_EQ(msix->fires[0].second.data, 0x31u);
  // The driver suppressed interrupts (VRING_AVAIL_F_NO_INTERRUPT): nothing fires.
  memory.write_object<uint16_t>(0x11000, kVirtqAvailFlagNoInterrupt);
  device->queue_interrupt(0);
  EXPECT_EQ(msix->fires.size(), 1u);
  // A disabled queue's interrupt is dropped.
  device->queue_interrupt(1);
  EXPECT_EQ(msix->fires.size(), 1u);
  device->config_interrupt();
  ASSERT_EQ(msix->fires.size(), 2u);
  EXPECT_EQ(msix->fires[1].first, 0);
  EXPECT_EQ(bar_read(kConfigGeneration, 1), 1u);
}

TEST_F(VirtioPciActiveTest, MaskedVectorIsPendingUntilUnmasked) {
  program_vector(1, 0xfee00000, 0x31, true);
  device->queue_interrupt(0);
  EXPECT_TRUE(msix->fires.empty());
  EXPECT_EQ(pba(), 1u << 1);
  EXPECT_TRUE(pci.msix().pending(1));
  bar_write(VirtioPci::kMsixTableOffset + 16 + 12, 4, 0);  // unmask
  ASSERT_EQ(msix->fires.size(), 1u);
  EXPECT_EQ(msix->fires[0].first, 1);
  EXPECT_EQ(pba(), 0u);
}

TEST_F(VirtioPciActiveTest, FunctionMaskHoldsEveryVector) {
  enable_msix(true);
  device->queue_interrupt(0);
  device->config_interrupt();
  EXPECT_TRUE(msix->fires.empty());
  EXPECT_EQ(pba(), 0b11u);
  enable_msix(false);
  EXPECT_EQ(msix->fires.size(), 2u);
  EXPECT_EQ(pba(), 0u);
  EXPECT_FALSE(line->level);  // never INTx while MSI-X is on
}

TEST_F(VirtioPciActiveTest, NoVectorDropsTheInterrupt) {
  bar_write(kMsixConfig, 2, pci::kMsixNoVector);
  device->config_interrupt();
  EXPECT_TRUE(msix->fires.empty());
  EXPECT_FALSE(line->level);
}

TEST_F(VirtioPciActiveTest, ResetForgetsEverything) {
  set_status(0);
  EXPECT_EQ(device->resets, 1);
  EXPECT_EQ(status(), 0);
  EXPECT_EQ(pci.driver_features(), 0u);
  EXPECT_EQ(bar_read(kMsixConfig, 2), pci::kMsixNoVector);
  bar_write(kQueueSelect, 2, 0);
  EXPECT_EQ(bar_read(kQueueSize, 2), 16u);
  EXPECT_EQ(bar_read(kQueueEnable, 2), 0u);
  EXPECT_EQ(bar_read(kQueueDesc, 8), 0u);
  EXPECT_EQ(bar_read(kQueueMsixVector, 2), pci::kMsixNoVector);
  // Notifications stop reaching the device, and it can be brought up again.
  bar_write(VirtioPci::notify_offset(0), 2, 0);
  EXPECT_TRUE(device->notified.empty());
  negotiate(kFeatureVersion1);
  configure_queue(0, 16, 1);
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  EXPECT_EQ(device->activations, 2);
  EXPECT_EQ(status() & kStatusDeviceNeedsReset, 0);
  // The MSI-X table is PCI state and survives a virtio reset.
  EXPECT_EQ(pci.msix().message(1).data, 0x31u);
}

TEST_F(VirtioPciTest, PciCfgCapabilityIsAWindowOntoTheBar) {
  const uint32_t cap = pci.pci_cfg_capability_offset();
  EXPECT_EQ(config32(cap) & 0xff, pci::kCapabilityIdVendor);
  EXPECT_EQ(config32(cap) >> 24, kCapPciCfg);
  EXPECT_EQ(config32(cap) >> 16 & 0xff, 20u);
  auto write32 = [&](uint32_t offset, uint32_t value) {
    const uint8_t b[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                          static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
    pci.write_config(offset, b);
  };
  // Read num_queues (2 bytes at 0x12) through the window.
  write32(cap + 4, 0);  // bar 0
  write32(cap + 8, kNumQueues);
  write32(cap + 12, 2);
  EXPECT_EQ(config32(cap + 16) & 0xffff, 2u);
  // Write the device status through it.
  write32(cap + 8, kDeviceStatus);
  write32(cap + 12, 1);
  write32(cap + 16, kStatusAcknowledge);
  EXPECT_EQ(status(), kStatusAcknowledge);
  // A misaligned or oversized access, or another BAR, does nothing and reads zero.
  write32(cap + 8, kNumQueues + 1);
  write32(cap + 12, 2);
  EXPECT_EQ(config32(cap + 16), 0u);
  write32(cap + 4, 2);
  write32(cap + 8, kNumQueues);
  EXPECT_EQ(config32(cap + 16), 0u);
}

TEST_F(VirtioPciTest, DeviceConfigRegion) {
  EXPECT_EQ(bar_read(VirtioPci::kDeviceConfigOffset + 2, 2), 0x0403u);
  bar_write(VirtioPci::kDeviceConfigOffset, 1, 0xaa);
  EXPECT_EQ(device->config[0], 0xaa);
  EXPECT_EQ(bar_read(VirtioPci::kDeviceConfigOffset + 100, 4), 0u);
  // Accesses beyond the BAR are ignored.
  EXPECT_EQ(bar_read(pci.bar_size() - 2, 4), 0u);
}

}  // namespace
}  // namespace kdom::devices::virtio
