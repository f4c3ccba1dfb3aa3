// Tests of virtio-console: transmit buffers reach the output and are returned; host input
// waits (bounded) until the guest offers receive buffers and is split across them; nothing
// happens before activation; a broken queue is reported and stopped.
#include "devices/virtio/console.h"

#include <gtest/gtest.h>

#include <string>

namespace kdom::devices::virtio {
namespace {

constexpr uint16_t kSize = 8;
// Each queue has its own rings; data buffers lie at 0x10000 + 0x1000 * descriptor index.
struct Rings {
  uint64_t desc, avail, used;
};
constexpr Rings kRx{0x1000, 0x2000, 0x3000};
constexpr Rings kTx{0x4000, 0x5000, 0x6000};

class VirtioConsoleTest : public ::testing::Test {
 protected:
  GuestMemory memory{{{0, 1 << 20}}};
  std::shared_ptr<Virtqueue> rx =
      std::make_shared<Virtqueue>(memory, VirtqueueConfig{kSize, kRx.desc, kRx.avail, kRx.used, false, false});
  std::shared_ptr<Virtqueue> tx =
      std::make_shared<Virtqueue>(memory, VirtqueueConfig{kSize, kTx.desc, kTx.avail, kTx.used, false, false});
  uint16_t next_avail[2] = {0, 0};
  std::string output;
  std::vector<uint16_t> interrupts;
  ConsoleDevice device{[this](std::span<const uint8_t> bytes) { output.append(bytes.begin(), bytes.end()); }};

  static uint64_t data_address(uint16_t queue, uint16_t slot) { return 0x10000 + 0x1000u * (queue * kSize + slot); }

  // Offers one buffer on `queue` (0 rx: writable, 1 tx: readable holding `text`).
  void offer(uint16_t queue, uint32_t length, const std::string& text = {}) {
    const Rings& rings = queue == 0 ? kRx : kTx;
    uint16_t slot = next_avail[queue] % kSize;
    uint64_t address = data_address(queue, slot);
    if (!text.empty()) memory.write(address, text.data(), text.size());
    memory.write_object(rings.desc + slot * 16u,
                        VirtqDescriptor{address, length, static_cast<uint16_t>(queue == 0 ? kVirtqDescFlagWrite : 0), 0});
    memory.write_object<uint16_t>(rings.avail + 4 + 2u * slot, slot);
    memory.write_object<uint16_t>(rings.avail + 2, ++next_avail[queue]);
  }
  uint16_t used_index(const Rings& rings) { return memory.read_object<uint16_t>(rings.used + 2); }
  VirtqUsedElement used(const Rings& rings, uint16_t slot) {
    return memory.read_object<VirtqUsedElement>(rings.used + 4 + 8u * slot);
  }
  std::string received(uint16_t slot, uint32_t length) {
    std::string text(length, '\0');
    memory.read(data_address(0, slot), text.data(), length);
    return text;
  }
  void activate() {
    device.activate(memory, device.offered_features(), {rx, tx}, [this](uint16_t q) { interrupts.push_back(q); },
                    [] {});
  }
};

TEST_F(VirtioConsoleTest, OffersVersion1AndTwoQueues) {
  EXPECT_TRUE(device.offered_features() & kFeatureVersion1);
  EXPECT_EQ(device.queue_max_sizes().size(), 2u);
  EXPECT_EQ(device.type(), DeviceType::kConsole);
  uint8_t config[12];
  std::fill(std::begin(config), std::end(config), 0xaa);
  device.read_config(0, config);
  for (uint8_t byte : config) EXPECT_EQ(byte, 0);
}

TEST_F(VirtioConsoleTest, TransmitReachesTheOutputAndReturnsTheBuffers) {
  activate();
  offer(1, 6, "hello ");
  offer(1, 5, "world");
  device.notify_queue(ConsoleDevice::kTransmitQueue);
  EXPECT_EQ(output, "hello world");
  EXPECT_EQ(used_index(kTx), 2);
  EXPECT_EQ(used(kTx, 0).len, 0u);
  EXPECT_EQ(interrupts, std::vector<uint16_t>{1});
}

TEST_F(VirtioConsoleTest, InputWaitsForTheGuestsFirstWriteAndForReceiveBuffers) {
  activate();
  EXPECT_EQ(device.send_input(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("abcdefgh"), 8)), 8u);
  EXPECT_EQ(used_index(kRx), 0);  // no buffer yet: kept
  offer(0, 5);
  offer(0, 16);
  device.notify_queue(ConsoleDevice::kReceiveQueue);
  EXPECT_EQ(used_index(kRx), 0);  // the guest has not written yet: its port may not be ready
  offer(1, 2, "$ ");
  device.notify_queue(ConsoleDevice::kTransmitQueue);
  ASSERT_EQ(used_index(kRx), 2);
  EXPECT_EQ(used(kRx, 0).len, 5u);
  EXPECT_EQ(received(0, 5), "abcde");
  EXPECT_EQ(used(kRx, 1).len, 3u);
  EXPECT_EQ(received(1, 3), "fgh");
}

TEST_F(VirtioConsoleTest, PendingInputIsBounded) {
  std::vector<uint8_t> big(ConsoleDevice::kMaxPendingInput + 100, 'x');
  EXPECT_EQ(device.send_input(big), ConsoleDevice::kMaxPendingInput);
  EXPECT_EQ(device.send_input(big), 0u);
}

TEST_F(VirtioConsoleTest, NothingHappensBeforeActivationOrAfterReset) {
  offer(1, 3, "abc");
  device.notify_queue(ConsoleDevice::kTransmitQueue);
  EXPECT_EQ(output, "");
  EXPECT_EQ(used_index(kTx), 0);
  activate();
  device.reset();
  device.notify_queue(ConsoleDevice::kTransmitQueue);
  EXPECT_EQ(output, "");
  device.notify_queue(7);  // no such queue: ignored
}

TEST_F(VirtioConsoleTest, ABrokenQueueIsReportedAndStopped) {
  activate();
  memory.write_object<uint16_t>(kTx.avail + 2, 100);  // more chains than the queue holds
  EXPECT_THROW(device.notify_queue(ConsoleDevice::kTransmitQueue), VirtqueueError);
  offer(1, 3, "abc");
  device.notify_queue(ConsoleDevice::kTransmitQueue);  // stopped: no throw, nothing used
  EXPECT_EQ(output, "");
}

TEST_F(VirtioConsoleTest, AReadableBufferOnTheReceiveQueueGetsNothing) {
  activate();
  offer(1, 1, "x");
  device.notify_queue(ConsoleDevice::kTransmitQueue);
  device.send_input(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("zz"), 2));
  uint16_t slot = next_avail[0] % kSize;
  memory.write_object(kRx.desc + slot * 16u, VirtqDescriptor{data_address(0, slot), 8, 0, 0});
  memory.write_object<uint16_t>(kRx.avail + 4 + 2u * slot, slot);
  memory.write_object<uint16_t>(kRx.avail + 2, ++next_avail[0]);
  device.notify_queue(ConsoleDevice::kReceiveQueue);
  ASSERT_EQ(used_index(kRx), 1);
  EXPECT_EQ(used(kRx, 0).len, 0u);
}

}  // namespace
}  // namespace kdom::devices::virtio
