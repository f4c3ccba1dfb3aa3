// Tests of virtio-rng: writable buffers are filled with random bytes and returned with their
// length; readable buffers are left alone; requests are capped; notification before
// activation does nothing.
#include "devices/virtio/entropy.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace kdom::devices::virtio {
namespace {

constexpr uint64_t kDescTable = 0x1000, kAvailRing = 0x2000, kUsedRing = 0x3000, kData = 0x10000;
constexpr uint16_t kSize = 8;

class VirtioEntropyTest : public ::testing::Test {
 protected:
  GuestMemory memory{{{0, 1 << 20}}};
  std::shared_ptr<Virtqueue> queue =
      std::make_shared<Virtqueue>(memory, VirtqueueConfig{kSize, kDescTable, kAvailRing, kUsedRing, false, false});
  uint16_t next_avail = 0;

  // Makes a one-descriptor request of `length` bytes at kData available.
  void offer(uint32_t length, bool writable) {
    uint16_t head = next_avail % kSize;
    memory.write_object(kDescTable + head * 16u,
                        VirtqDescriptor{kData, length, static_cast<uint16_t>(writable ? kVirtqDescFlagWrite : 0), 0});
    memory.write_object<uint16_t>(kAvailRing + 4 + 2u * head, head);
    memory.write_object<uint16_t>(kAvailRing + 2, ++next_avail);
  }
  VirtqUsedElement used(uint16_t slot) { return memory.read_object<VirtqUsedElement>(kUsedRing + 4 + 8u * slot); }
  std::vector<uint8_t> data(uint32_t length) {
    std::vector<uint8_t> bytes(length);
    memory.read(kData, bytes.data(), length);
    return bytes;
  }
};

TEST_F(VirtioEntropyTest, FillsAWritableBufferWithRandomBytes) {
  offer(64, true);
  ASSERT_TRUE(EntropyDevice::serve(memory, *queue));
  EXPECT_EQ(used(0).len, 64u);
  auto first = data(64);
  EXPECT_NE(std::count(first.begin(), first.end(), 0), 64);
  offer(64, true);
  ASSERT_TRUE(EntropyDevice::serve(memory, *queue));
  EXPECT_NE(data(64), first);
  EXPECT_EQ(memory.read_object<uint16_t>(kUsedRing + 2), 2);
}

TEST_F(VirtioEntropyTest, LeavesAReadableBufferAloneAndUsesNothing) {
  std::vector<uint8_t> pattern(64, 0xab);
  memory.write(kData, pattern.data(), pattern.size());
  offer(64, false);
  ASSERT_TRUE(EntropyDevice::serve(memory, *queue));
  EXPECT_EQ(used(0).len, 0u);
  EXPECT_EQ(data(64), pattern);
}

TEST_F(VirtioEntropyTest, CapsOneRequest) {
  offer(EntropyDevice::kMaxBytesPerRequest * 2, true);
  ASSERT_TRUE(EntropyDevice::serve(memory, *queue));
  EXPECT_EQ(used(0).len, EntropyDevice::kMaxBytesPerRequest);
}

TEST_F(VirtioEntropyTest, NothingAvailableUsesNothing) { EXPECT_FALSE(EntropyDevice::serve(memory, *queue)); }

TEST_F(VirtioEntropyTest, NotifyServesOnlyAfterActivationAndRaisesTheInterrupt) {
  EntropyDevice device;
  int interrupts = 0;
  offer(16, true);
  device.notify_queue(0);
  EXPECT_EQ(memory.read_object<uint16_t>(kUsedRing + 2), 0);
  device.activate(memory, device.offered_features(), {queue}, [&](uint16_t) { ++interrupts; }, [] {});
  device.notify_queue(0);
  EXPECT_EQ(memory.read_object<uint16_t>(kUsedRing + 2), 1);
  EXPECT_EQ(interrupts, 1);
  device.reset();
  offer(16, true);
  device.notify_queue(0);
  EXPECT_EQ(memory.read_object<uint16_t>(kUsedRing + 2), 1);
}

TEST_F(VirtioEntropyTest, OffersVersion1AndOneQueue) {
  EntropyDevice device;
  EXPECT_EQ(device.type(), DeviceType::kEntropy);
  EXPECT_TRUE(device.offered_features() & kFeatureVersion1);
  EXPECT_EQ(device.queue_max_sizes().size(), 1u);
}

}  // namespace
}  // namespace kdom::devices::virtio
