// Tests of the split Virtqueue: rings are built by hand in a 1 MiB GuestMemory, as a driver
// would write them, then chains are popped and returned. Hostile rings must be refused with
// VirtqueueError and leave guest memory untouched.
#include "devices/virtio/queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kdom::devices::virtio {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMemorySize = 1 << 20;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kDescTable = 0x1000;
constexpr uint64_t kAvailRing = 0x2000;
constexpr uint64_t kUsedRing = 0x3000;
constexpr uint64_t kIndirectTable = 0x20000;
constexpr uint16_t kNext = kVirtqDescFlagNext;
constexpr uint16_t kWrite = kVirtqDescFlagWrite;
constexpr uint16_t kIndirect = kVirtqDescFlagIndirect;

class VirtqueueTest : public ::testing::Test {
 protected:
  GuestMemory memory{std::vector<GuestRange>{{0, kMemorySize}}};
  VirtqueueConfig config{16, kDescTable, kAvailRing, kUsedRing, false, true};

  void set_descriptor(uint64_t table, uint32_t index, uint64_t addr, uint32_t len, uint16_t flags,
                      uint16_t next = 0) {
    memory.write_object(table + 16 * uint64_t{index}, VirtqDescriptor{addr, len, flags, next});
  }
  void set_desc(uint16_t index, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    set_descriptor(kDescTable, index, addr, len, flags, next);
  }
  uint16_t avail_idx() { return memory.read_object<uint16_t>(kAvailRing + 2); }
  void set_avail_idx(uint16_t idx) { memory.write_object<uint16_t>(kAvailRing + 2, idx); }
  void set_avail_flags(uint16_t flags) { memory.write_object<uint16_t>(kAvailRing, flags); }
  void set_used_event(uint16_t idx) { memory.write_object<uint16_t>(kAvailRing + 4 + 2 * config.size, idx); }
  // Puts `head` in the next available slot and publishes it, as a driver does.
  void make_available(uint16_t head) {
    const uint16_t idx = avail_idx();
    memory.write_object<uint16_t>(kAvailRing + 4 + 2 * uint64_t{idx % config.size}, head);
    set_avail_idx(static_cast<uint16_t>(idx + 1));
  }
  uint16_t used_idx() { return memory.read_object<uint16_t>(kUsedRing + 2); }
  VirtqUsedElement used_element(uint32_t slot) {
    return memory.read_object<VirtqUsedElement>(kUsedRing + 4 + 8 * uint64_t{slot});
  }
  uint16_t avail_event() { return memory.read_object<uint16_t>(kUsedRing + 4 + 8 * config.size); }
  uint16_t used_flags() { return memory.read_object<uint16_t>(kUsedRing); }
  std::vector<uint8_t> snapshot() {
    std::vector<uint8_t> bytes(kMemorySize);
    memory.read(0, bytes.data(), bytes.size());
    return bytes;
  }
  // pop() must throw VirtqueueError whose message contains `reason`, naming `head` (or no head),
  // and must write nothing to guest memory.
  void expect_pop_refused(Virtqueue& queue, const std::string& reason, std::optional<uint16_t> head) {
    const auto before = snapshot();
    try {
      queue.pop();
      ADD_FAILURE() << "pop accepted a chain that should be refused (" << reason << ")";
    } catch (const VirtqueueError& error) {
      EXPECT_THAT(error.what(), HasSubstr(reason));
      EXPECT_EQ(error.head(), head);
    }
    EXPECT_TRUE(snapshot() == before) << "guest memory changed";
  }
  void expect_pop_refused(const std::string& reason, std::optional<uint16_t> head = 0) {
    Virtqueue queue(memory, config);
    expect_pop_refused(queue, reason, head);
  }
};

// --- configuration ------------------------------------------------------------------------

TEST_F(VirtqueueTest, ValidConfigurationPasses) {
  Virtqueue queue(memory, config);
  EXPECT_NO_THROW(queue.validate());
  config.size = kVirtqMaxSize;
  Virtqueue largest(memory, config);
  EXPECT_NO_THROW(largest.validate());
}

TEST_F(VirtqueueTest, SizeMustBePowerOfTwoUpTo32768) {
  for (uint32_t size : {0u, 3u, 24u, 65536u}) {
    config.size = size;
    Virtqueue queue(memory, config);
    EXPECT_THROW(queue.validate(), VirtqueueError) << size;
  }
}

TEST_F(VirtqueueTest, AreasMustBeAligned) {
  struct Case {
    uint64_t desc, avail, used;
    bool valid;
  };
  for (const Case& c : {Case{0x1008, kAvailRing, kUsedRing, false}, Case{kDescTable, 0x2001, kUsedRing, false},
                        Case{kDescTable, kAvailRing, 0x3002, false}, Case{0x1010, 0x2002, 0x3004, true}}) {
    config.descriptor_table = c.desc;
    config.avail_ring = c.avail;
    config.used_ring = c.used;
    Virtqueue queue(memory, config);
    if (c.valid)
      EXPECT_NO_THROW(queue.validate());
    else
      EXPECT_THROW(queue.validate(), VirtqueueError) << c.desc << " " << c.avail << " " << c.used;
  }
}

TEST_F(VirtqueueTest, AreasMustBeInsideGuestMemory) {
  // Each area sized for 16 entries: descriptors 256 bytes, avail 38, used 134.
  config.descriptor_table = kMemorySize - 256;
  EXPECT_NO_THROW(Virtqueue(memory, config).validate());
  config.descriptor_table = kMemorySize - 240;
  EXPECT_THROW(Virtqueue(memory, config).validate(), VirtqueueError);
  config.descriptor_table = kDescTable;
  config.avail_ring = kMemorySize - 36;
  EXPECT_THROW(Virtqueue(memory, config).validate(), VirtqueueError);
  config.avail_ring = kAvailRing;
  config.used_ring = kMemorySize - 132;
  EXPECT_THROW(Virtqueue(memory, config).validate(), VirtqueueError);
  config.used_ring = 0xfffffffffffff000;
  EXPECT_THROW(Virtqueue(memory, config).validate(), VirtqueueError);
}

TEST_F(VirtqueueTest, PopValidatesFirst) {
  config.used_ring = kMemorySize;
  Virtqueue queue(memory, config);
  EXPECT_FALSE(queue.broken());
  EXPECT_THROW(queue.pop(), VirtqueueError);
  EXPECT_TRUE(queue.broken());
  // Broken: the bad used ring is never written, and nothing throws a second time.
  const auto before = snapshot();
  EXPECT_NO_THROW(queue.push_used(0, 0));
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_TRUE(snapshot() == before);
}

TEST_F(VirtqueueTest, BrokenQueueServesNothingUntilRestored) {
  set_desc(0, 0x10000, 8, 0);
  make_available(0);
  Virtqueue queue(memory, config);
  ASSERT_TRUE(queue.has_available());
  queue.mark_broken();
  const auto before = snapshot();
  EXPECT_FALSE(queue.has_available());
  EXPECT_FALSE(queue.pop().has_value());
  uint32_t rejected = 0;
  EXPECT_FALSE(queue.next_request(&rejected).has_value());
  queue.push_used(0, 8);
  EXPECT_FALSE(queue.needs_notification());
  EXPECT_FALSE(queue.set_notifications(true));
  queue.set_avail_event();
  EXPECT_TRUE(snapshot() == before) << "a broken queue wrote to guest memory";
  EXPECT_THAT(queue.describe(), HasSubstr("BROKEN"));
  queue.restore(queue.save());
  EXPECT_FALSE(queue.broken());
  EXPECT_TRUE(queue.pop().has_value());
}

// --- well-formed chains -------------------------------------------------------------------

TEST_F(VirtqueueTest, EmptyQueuePopsNothing) {
  Virtqueue queue(memory, config);
  const auto before = snapshot();
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_TRUE(snapshot() == before);
}

TEST_F(VirtqueueTest, TwoDescriptorChain) {
  set_desc(0, 0x10000, 100, kNext, 1);
  set_desc(1, 0x11000, 200, kWrite);
  make_available(0);
  Virtqueue queue(memory, config);
  auto chain = queue.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->head, 0);
  EXPECT_EQ(chain->buffers, (std::vector<VirtqBuffer>{{0x10000, 100, false}, {0x11000, 200, true}}));
  EXPECT_EQ(chain->readable_bytes(), 100u);
  EXPECT_EQ(chain->writable_bytes(), 200u);
  EXPECT_FALSE(queue.pop().has_value());
}

// The debugging line puts the device's indices beside what the driver wrote in the rings.
TEST_F(VirtqueueTest, DescribeShowsBothSidesIndices) {
  set_desc(0, 0x10000, 100, 0);
  make_available(0);
  make_available(0);
  set_used_event(7);
  Virtqueue queue(memory, config);
  EXPECT_THAT(queue.describe(), HasSubstr("(not validated)"));
  ASSERT_TRUE(queue.pop().has_value());
  queue.push_used(0, 0);
  const std::string line = queue.describe();
  EXPECT_THAT(line, HasSubstr("size=16 next_avail=1 next_used=1"));
  EXPECT_THAT(line, HasSubstr("avail_idx=2 avail_flags=0 used_event=7"));
  EXPECT_THAT(line, HasSubstr("used_idx=1 used_flags=0"));
  EXPECT_THAT(line, HasSubstr("notifications=on"));
}

TEST_F(VirtqueueTest, ChainsComeInRingOrderAndFollowNext) {
  set_desc(3, 0x10000, 8, kNext, 9);
  set_desc(9, 0x10008, 8, kWrite | kNext, 4);
  set_desc(4, 0x10010, 8, kWrite);
  set_desc(0, 0x20000, 64, 0);
  make_available(3);
  make_available(0);
  Virtqueue queue(memory, config);
  auto first = queue.pop();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->head, 3);
  EXPECT_EQ(first->buffers,
            (std::vector<VirtqBuffer>{{0x10000, 8, false}, {0x10008, 8, true}, {0x10010, 8, true}}));
  auto second = queue.pop();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->head, 0);
  EXPECT_EQ(second->buffers, (std::vector<VirtqBuffer>{{0x20000, 64, false}}));
  EXPECT_FALSE(queue.pop().has_value());
}

TEST_F(VirtqueueTest, ChainAsLongAsTheQueueIsAccepted) {
  for (uint16_t i = 0; i < 16; ++i) set_desc(i, 0x10000 + 0x100 * i, 0x100, i < 15 ? kNext : 0, i + 1);
  make_available(0);
  Virtqueue queue(memory, config);
  auto chain = queue.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->buffers.size(), 16u);
  EXPECT_EQ(chain->readable_bytes(), 0x1000u);
}

TEST_F(VirtqueueTest, IndirectChain) {
  set_desc(2, kIndirectTable, 48, kIndirect);
  set_descriptor(kIndirectTable, 0, 0x10000, 10, kNext, 2);
  set_descriptor(kIndirectTable, 2, 0x11000, 20, kNext, 1);
  set_descriptor(kIndirectTable, 1, 0x12000, 30, kWrite);
  make_available(2);
  Virtqueue queue(memory, config);
  auto chain = queue.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->head, 2);
  EXPECT_EQ(chain->buffers,
            (std::vector<VirtqBuffer>{{0x10000, 10, false}, {0x11000, 20, false}, {0x12000, 30, true}}));
}

TEST_F(VirtqueueTest, DirectDescriptorsThenIndirectTable) {
  set_desc(0, 0x10000, 8, kNext, 5);
  set_desc(5, kIndirectTable, 32, kIndirect | kWrite);  // WRITE on the table itself is ignored
  set_descriptor(kIndirectTable, 0, 0x11000, 16, kNext, 1);
  set_descriptor(kIndirectTable, 1, 0x12000, 64, kWrite);
  make_available(0);
  Virtqueue queue(memory, config);
  auto chain = queue.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->buffers,
            (std::vector<VirtqBuffer>{{0x10000, 8, false}, {0x11000, 16, false}, {0x12000, 64, true}}));
}

TEST_F(VirtqueueTest, IndexWrapPast65535) {
  Virtqueue queue(memory, config);
  queue.restore(VirtqueueState{config, 65534, 65534});
  set_avail_idx(65534);
  memory.write_object<uint16_t>(kUsedRing + 2, 65534);
  for (uint16_t head : {7, 8, 9}) {
    set_desc(head, 0x10000 + 0x1000 * head, 512, kWrite);
    make_available(head);  // ring slots 14, 15, 0
  }
  EXPECT_EQ(avail_idx(), 1);
  for (uint16_t head : {7, 8, 9}) {
    auto chain = queue.pop();
    ASSERT_TRUE(chain.has_value());
    EXPECT_EQ(chain->head, head);
    EXPECT_EQ(chain->buffers, (std::vector<VirtqBuffer>{{0x10000 + 0x1000 * uint64_t{head}, 512, true}}));
    queue.push_used(head, 100 + head);
  }
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_EQ(used_idx(), 1);
  EXPECT_EQ(used_element(14).id, 7u);
  EXPECT_EQ(used_element(15).id, 8u);
  EXPECT_EQ(used_element(0).id, 9u);
  EXPECT_EQ(used_element(0).len, 109u);
  EXPECT_EQ(queue.save().next_avail, 1);
  EXPECT_EQ(queue.save().next_used, 1);
}

TEST_F(VirtqueueTest, FullRingOfPendingChainsIsAccepted) {
  set_desc(0, 0x10000, 1, 0);
  set_avail_idx(16);  // 16 pending, every slot names head 0
  Virtqueue queue(memory, config);
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(queue.pop().has_value()) << i;
  EXPECT_FALSE(queue.pop().has_value());
}

// --- hostile chains -----------------------------------------------------------------------

TEST_F(VirtqueueTest, RefusesHeadOutOfRange) {
  make_available(16);
  expect_pop_refused("head index 16", std::nullopt);
}

TEST_F(VirtqueueTest, RefusesNextOutOfRange) {
  set_desc(0, 0x10000, 8, kNext, 16);
  make_available(0);
  expect_pop_refused("next index 16");
}

TEST_F(VirtqueueTest, RefusesLoop) {
  set_desc(0, 0x10000, 8, kNext, 1);
  set_desc(1, 0x10000, 8, kNext, 0);
  make_available(0);
  expect_pop_refused("loop");
}

TEST_F(VirtqueueTest, RefusesSelfLoop) {
  set_desc(4, 0x10000, 8, kWrite | kNext, 4);
  make_available(4);
  expect_pop_refused("loop", 4);
}

TEST_F(VirtqueueTest, RefusesReadableAfterWritable) {
  set_desc(0, 0x10000, 8, kWrite | kNext, 1);
  set_desc(1, 0x11000, 8, 0);
  make_available(0);
  expect_pop_refused("readable buffer after");
}

TEST_F(VirtqueueTest, RefusesReadableAfterWritableAcrossIndirectTable) {
  set_desc(0, 0x10000, 8, kWrite | kNext, 1);
  set_desc(1, kIndirectTable, 16, kIndirect);
  set_descriptor(kIndirectTable, 0, 0x11000, 8, 0);
  make_available(0);
  expect_pop_refused("readable buffer after");
}

TEST_F(VirtqueueTest, RefusesIndirectWithoutNegotiation) {
  config.indirect_desc = false;
  set_desc(0, kIndirectTable, 16, kIndirect);
  set_descriptor(kIndirectTable, 0, 0x11000, 8, 0);
  make_available(0);
  expect_pop_refused("VIRTIO_RING_F_INDIRECT_DESC");
}

TEST_F(VirtqueueTest, RefusesIndirectWithNext) {
  set_desc(0, kIndirectTable, 16, kIndirect | kNext, 1);
  set_desc(1, 0x10000, 8, 0);
  set_descriptor(kIndirectTable, 0, 0x11000, 8, 0);
  make_available(0);
  expect_pop_refused("with NEXT");
}

TEST_F(VirtqueueTest, RefusesNestedIndirect) {
  set_desc(0, kIndirectTable, 32, kIndirect);
  set_descriptor(kIndirectTable, 0, 0x11000, 8, kNext, 1);
  set_descriptor(kIndirectTable, 1, kIndirectTable + 0x100, 16, kIndirect);
  set_descriptor(kIndirectTable + 0x100, 0, 0x12000, 8, 0);
  make_available(0);
  expect_pop_refused("nested");
}

TEST_F(VirtqueueTest, RefusesIndirectLengthNotMultipleOf16) {
  set_desc(0, kIndirectTable, 24, kIndirect);
  set_descriptor(kIndirectTable, 0, 0x11000, 8, 0);
  make_available(0);
  expect_pop_refused("multiple of 16");
}

TEST_F(VirtqueueTest, RefusesIndirectLengthZero) {
  set_desc(0, kIndirectTable, 0, kIndirect);
  make_available(0);
  expect_pop_refused("multiple of 16");
}

TEST_F(VirtqueueTest, RefusesIndirectTableTooLarge) {
  set_desc(0, 0x10000, (kVirtqMaxIndirectDescriptors + 1) * 16, kIndirect);  // inside RAM
  set_descriptor(0x10000, 0, 0x11000, 8, 0);
  make_available(0);
  expect_pop_refused("too large");
}

TEST_F(VirtqueueTest, RefusesIndirectTableOutsideMemory) {
  set_desc(0, kMemorySize - 16, 32, kIndirect);
  set_descriptor(kMemorySize - 16, 0, 0x11000, 8, 0);
  make_available(0);
  expect_pop_refused("indirect table 0xffff0+0x20 is outside guest RAM");
}

TEST_F(VirtqueueTest, RefusesIndirectLoop) {
  set_desc(0, kIndirectTable, 32, kIndirect);
  set_descriptor(kIndirectTable, 0, 0x11000, 8, kNext, 1);
  set_descriptor(kIndirectTable, 1, 0x12000, 8, kNext, 0);
  make_available(0);
  expect_pop_refused("loop");
}

TEST_F(VirtqueueTest, RefusesIndirectNextOutOfRange) {
  set_desc(0, kIndirectTable, 32, kIndirect);
  set_descriptor(kIndirectTable, 0, 0x11000, 8, kNext, 2);
  set_descriptor(kIndirectTable, 2, 0x12000, 8, 0);  // beyond the table's 2 entries
  make_available(0);
  expect_pop_refused("indirect next index 2");
}

TEST_F(VirtqueueTest, RefusesBufferOutsideMemory) {
  set_desc(0, kMemorySize, 1, 0);
  make_available(0);
  expect_pop_refused("outside guest RAM");
}

TEST_F(VirtqueueTest, RefusesBufferCrossingEndOfMemory) {
  set_desc(0, 0x10000, 8, kNext, 1);
  set_desc(1, kMemorySize - 1, 2, kWrite);
  make_available(0);
  expect_pop_refused("outside guest RAM");
}

TEST_F(VirtqueueTest, RefusesBufferAddressThatWraps) {
  set_desc(0, 0xfffffffffffff000, 0x2000, kWrite);
  make_available(0);
  expect_pop_refused("outside guest RAM");
}

TEST_F(VirtqueueTest, RefusesZeroLengthBuffer) {
  set_desc(0, 0x10000, 0, 0);
  make_available(0);
  expect_pop_refused("zero-length");
}

TEST_F(VirtqueueTest, RefusesTotalLengthBeyond4GiB) {
  // 4096 buffers of 1 MiB (all the same guest RAM) from one indirect table: exactly 4 GiB.
  constexpr uint32_t kEntries = 4096;
  set_desc(0, 0x40000, kEntries * 16, kIndirect);
  for (uint32_t i = 0; i < kEntries; ++i)
    set_descriptor(0x40000, i, 0, kMiB, i + 1 < kEntries ? kNext : 0, static_cast<uint16_t>(i + 1));
  make_available(0);
  expect_pop_refused("exceeds 4 GiB");

  // One byte less is accepted.
  set_descriptor(0x40000, kEntries - 1, 0, kMiB - 1, 0);
  make_available(0);
  Virtqueue queue(memory, config);
  queue.restore(VirtqueueState{config, 1, 0});
  auto chain = queue.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->readable_bytes(), 0xffffffffu);
}

TEST_F(VirtqueueTest, RefusesAvailIdxJumpingAheadOfQueueSize) {
  set_desc(0, 0x10000, 1, 0);
  set_avail_idx(17);
  Virtqueue queue(memory, config);
  expect_pop_refused(queue, "more than the queue size", std::nullopt);
  EXPECT_EQ(queue.save().next_avail, 0);  // nothing consumed
  EXPECT_TRUE(queue.broken());
  set_avail_idx(1);  // sane again, too late: the queue stays broken
  EXPECT_FALSE(queue.pop().has_value());
  set_avail_idx(0xffff);  // "behind" is a huge jump ahead in 16-bit arithmetic
  expect_pop_refused("more than the queue size", std::nullopt);
}

TEST_F(VirtqueueTest, MalformedChainIsConsumedAndNextChainStillPops) {
  set_desc(0, 0x10000, 0, 0);  // bad: zero length
  set_desc(1, 0x10000, 8, 0);
  make_available(0);
  make_available(1);
  Virtqueue queue(memory, config);
  expect_pop_refused(queue, "zero-length", 0);
  queue.push_used(0, 0);  // the device fails that request
  auto chain = queue.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->head, 1);
  EXPECT_EQ(used_idx(), 1);
}

// --- used ring ----------------------------------------------------------------------------

TEST_F(VirtqueueTest, PushUsedWritesElementThenIndex) {
  Virtqueue queue(memory, config);
  queue.push_used(3, 512);
  EXPECT_EQ(used_idx(), 1);
  EXPECT_EQ(used_element(0).id, 3u);
  EXPECT_EQ(used_element(0).len, 512u);
  queue.push_used(15, 0);
  EXPECT_EQ(used_idx(), 2);
  EXPECT_EQ(used_element(1).id, 15u);
  EXPECT_EQ(used_element(1).len, 0u);
  EXPECT_EQ(used_element(0).id, 3u);
}

TEST_F(VirtqueueTest, PushUsedRefusesHeadOutOfRange) {
  Virtqueue queue(memory, config);
  const auto before = snapshot();
  EXPECT_THROW(queue.push_used(16, 1), VirtqueueError);
  EXPECT_TRUE(snapshot() == before);
  EXPECT_EQ(queue.save().next_used, 0);
}

// --- notifications ------------------------------------------------------------------------

TEST_F(VirtqueueTest, NeedEventRule) {
  EXPECT_TRUE(virtq_need_event(0, 1, 0));
  EXPECT_FALSE(virtq_need_event(1, 1, 0));
  EXPECT_TRUE(virtq_need_event(2, 3, 0));
  EXPECT_FALSE(virtq_need_event(3, 3, 0));
  EXPECT_TRUE(virtq_need_event(65535, 0, 65534));
  EXPECT_TRUE(virtq_need_event(65535, 2, 65535));
  EXPECT_FALSE(virtq_need_event(1, 0, 65534));
  EXPECT_FALSE(virtq_need_event(5, 5, 5));
}

TEST_F(VirtqueueTest, WithoutEventIdxHonoursNoInterrupt) {
  Virtqueue queue(memory, config);
  queue.push_used(0, 1);
  EXPECT_TRUE(queue.needs_notification());
  set_avail_flags(kVirtqAvailFlagNoInterrupt);
  queue.push_used(1, 1);
  EXPECT_FALSE(queue.needs_notification());
  set_avail_flags(0);
  EXPECT_TRUE(queue.needs_notification());
}

TEST_F(VirtqueueTest, EventIdxFollowsUsedEvent) {
  config.event_idx = true;
  set_avail_flags(kVirtqAvailFlagNoInterrupt);  // ignored with EVENT_IDX
  Virtqueue queue(memory, config);
  set_used_event(0);  // interrupt once entry 0 is used
  queue.push_used(0, 1);
  EXPECT_TRUE(queue.needs_notification());
  queue.push_used(1, 1);
  EXPECT_FALSE(queue.needs_notification());  // entry 0 already signalled
  set_used_event(3);
  queue.push_used(2, 1);
  EXPECT_FALSE(queue.needs_notification());  // used idx 3: entry 3 not yet used
  queue.push_used(3, 1);
  queue.push_used(4, 1);
  EXPECT_TRUE(queue.needs_notification());  // entries 3 and 4 in one batch
  EXPECT_FALSE(queue.needs_notification());  // nothing new
}

TEST_F(VirtqueueTest, EventIdxAcrossWrap) {
  config.event_idx = true;
  Virtqueue queue(memory, config);
  queue.restore(VirtqueueState{config, 0, 65534});
  set_used_event(1000);
  EXPECT_TRUE(queue.needs_notification());  // after restore: notify once to be safe
  EXPECT_FALSE(queue.needs_notification());
  set_used_event(65535);
  queue.push_used(0, 1);
  queue.push_used(1, 1);  // used idx wraps 65534 -> 0
  EXPECT_TRUE(queue.needs_notification());
  set_used_event(1);
  queue.push_used(2, 1);  // used idx 1: entry 1 not yet used
  EXPECT_FALSE(queue.needs_notification());
  queue.push_used(3, 1);
  EXPECT_TRUE(queue.needs_notification());
  EXPECT_EQ(used_idx(), 2);
}

TEST_F(VirtqueueTest, SetAvailEventWritesNextAvail) {
  config.event_idx = true;
  set_desc(0, 0x10000, 8, 0);
  make_available(0);
  make_available(0);
  Virtqueue queue(memory, config);
  ASSERT_TRUE(queue.pop().has_value());
  ASSERT_TRUE(queue.pop().has_value());
  queue.set_avail_event();
  EXPECT_EQ(avail_event(), 2);
}

TEST_F(VirtqueueTest, SetAvailEventWithoutEventIdxWritesNothing) {
  set_desc(0, 0x10000, 8, 0);
  make_available(0);
  Virtqueue queue(memory, config);
  ASSERT_TRUE(queue.pop().has_value());
  const auto before = snapshot();
  queue.set_avail_event();
  EXPECT_TRUE(snapshot() == before);
}

// A device polling the ring turns notifications off: NO_NOTIFY in the used flags, and
// next_request() no longer asks for one when the ring runs dry.
TEST_F(VirtqueueTest, NotificationsOffAndOnWithoutEventIdx) {
  set_desc(0, 0x10000, 8, 0);
  Virtqueue queue(memory, config);
  EXPECT_FALSE(queue.set_notifications(false));
  EXPECT_EQ(used_flags(), kVirtqUsedFlagNoNotify);
  EXPECT_FALSE(queue.has_available());
  make_available(0);
  EXPECT_TRUE(queue.has_available());
  uint32_t rejected = 0;
  ASSERT_TRUE(queue.next_request(&rejected).has_value());
  EXPECT_FALSE(queue.next_request(&rejected).has_value());
  EXPECT_EQ(used_flags(), kVirtqUsedFlagNoNotify);
  // Back on with nothing new: nothing to serve.
  EXPECT_FALSE(queue.set_notifications(true));
  EXPECT_EQ(used_flags(), 0);
  // A chain made available while they were off is reported when they come back on.
  queue.set_notifications(false);
  make_available(0);
  EXPECT_TRUE(queue.set_notifications(true));
  EXPECT_TRUE(queue.has_available());
}

TEST_F(VirtqueueTest, NotificationsOffWithEventIdxLeaveAvailEventBehind) {
  config.event_idx = true;
  set_desc(0, 0x10000, 8, 0);
  make_available(0);
  make_available(0);
  Virtqueue queue(memory, config);
  uint32_t rejected = 0;
  queue.set_notifications(false);
  ASSERT_TRUE(queue.next_request(&rejected).has_value());
  ASSERT_TRUE(queue.next_request(&rejected).has_value());
  EXPECT_FALSE(queue.next_request(&rejected).has_value());
  // avail_event one behind the taken entries: a driver adding entry 2 does not notify.
  EXPECT_EQ(avail_event(), static_cast<uint16_t>(0xffff));
  EXPECT_FALSE(virtq_need_event(avail_event(), 3, 2));
  EXPECT_EQ(used_flags(), 0);  // the flag is not used with EVENT_IDX
  EXPECT_FALSE(queue.set_notifications(true));
  EXPECT_EQ(avail_event(), 2);
  EXPECT_TRUE(virtq_need_event(avail_event(), 3, 2));
}

// --- save/restore -------------------------------------------------------------------------

TEST_F(VirtqueueTest, SaveRestoreContinuesWhereItLeftOff) {
  set_desc(0, 0x10000, 8, 0);
  set_desc(1, 0x11000, 8, kWrite);
  make_available(0);
  make_available(1);
  Virtqueue queue(memory, config);
  ASSERT_TRUE(queue.pop().has_value());
  queue.push_used(0, 8);
  const VirtqueueState state = queue.save();
  EXPECT_EQ(state, (VirtqueueState{config, 1, 1}));

  Virtqueue restored(memory, VirtqueueConfig{});
  restored.restore(state);
  EXPECT_EQ(restored.save(), state);
  auto chain = restored.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->head, 1);
  restored.push_used(1, 8);
  EXPECT_EQ(used_idx(), 2);
  EXPECT_EQ(used_element(1).id, 1u);
}

TEST_F(VirtqueueTest, RestoreRefusesBadConfigurationAndKeepsState) {
  Virtqueue queue(memory, config);
  queue.restore(VirtqueueState{config, 5, 4});
  VirtqueueConfig bad = config;
  bad.size = 12;
  EXPECT_THROW(queue.restore(VirtqueueState{bad, 9, 9}), VirtqueueError);
  bad = config;
  bad.avail_ring = kMemorySize;
  EXPECT_THROW(queue.restore(VirtqueueState{bad, 9, 9}), VirtqueueError);
  EXPECT_EQ(queue.save(), (VirtqueueState{config, 5, 4}));
}

// --- the dirty log (live migration) --------------------------------------------------------

// The pages set in guest memory's dirty log (one region), cleared.
std::set<uint64_t> dirty_pages(const GuestMemory& memory) {
  std::set<uint64_t> pages;
  const auto words = memory.take_dirty(0);
  for (size_t w = 0; w < words.size(); ++w)
    for (int bit = 0; bit < 64; ++bit)
      if (words[w] >> bit & 1) pages.insert(w * 64 + static_cast<uint64_t>(bit));
  return pages;
}

// push_used marks what the device wrote: the writable buffers up to bytes_written (not the
// readable one, not the writable bytes past it), the chain's last writable byte (a block
// request's status, written whatever the length says), and the used entry and index.
TEST_F(VirtqueueTest, PushUsedMarksTheWrittenBuffersAndTheUsedRing) {
  set_desc(0, 0x10000, 16, kNext, 1);                // readable: page 0x10
  set_desc(1, 0x20000, 0x3000, kWrite | kNext, 2);   // writable: pages 0x20-0x22
  set_desc(2, 0x30000, 0x1000, kWrite);              // writable: page 0x30
  make_available(0);
  Virtqueue queue(memory, config);
  ASSERT_TRUE(queue.pop().has_value());
  memory.start_dirty_log();
  queue.push_used(0, 0x1001);  // page 0x20 whole and a byte of 0x21
  EXPECT_EQ(dirty_pages(memory), (std::set<uint64_t>{kUsedRing / 0x1000, 0x20, 0x21, 0x30}));
  EXPECT_EQ(used_idx(), 1);
  EXPECT_EQ(used_element(0).len, 0x1001u);
}

TEST_F(VirtqueueTest, PushUsedMarksThroughAnIndirectTable) {
  set_descriptor(kIndirectTable, 0, 0x40000, 100, kNext, 1);
  set_descriptor(kIndirectTable, 1, 0x50000, 0x2000, kWrite);
  set_desc(0, kIndirectTable, 32, kIndirect);
  make_available(0);
  Virtqueue queue(memory, config);
  ASSERT_TRUE(queue.pop().has_value());
  memory.start_dirty_log();
  queue.push_used(0, 0);  // nothing said written: the last writable byte still is marked
  EXPECT_EQ(dirty_pages(memory), (std::set<uint64_t>{kUsedRing / 0x1000, 0x51}));
}

TEST_F(VirtqueueTest, NothingIsMarkedWhileNoLogIsKept) {
  set_desc(0, 0x20000, 0x1000, kWrite);
  make_available(0);
  Virtqueue queue(memory, config);
  ASSERT_TRUE(queue.pop().has_value());
  queue.push_used(0, 0x1000);
  memory.start_dirty_log();
  EXPECT_TRUE(dirty_pages(memory).empty());
}

// The ring fields the device writes to steer notifications are marked too.
TEST_F(VirtqueueTest, NotificationFieldsItWritesAreMarked) {
  constexpr uint64_t kUsedPage = kUsedRing / 0x1000;
  {
    Virtqueue queue(memory, config);  // no EVENT_IDX: the used ring's flags
    memory.start_dirty_log();
    queue.set_notifications(false);
    EXPECT_EQ(dirty_pages(memory), (std::set<uint64_t>{kUsedPage}));
  }
  config.event_idx = true;
  config.used_ring = 0x3ff8 - 8 * 16 + 8;  // avail_event (after 16 entries) on the next page
  Virtqueue queue(memory, config);
  queue.set_avail_event();
  EXPECT_EQ(dirty_pages(memory), (std::set<uint64_t>{0x4}));
  queue.set_notifications(false);
  EXPECT_EQ(dirty_pages(memory), (std::set<uint64_t>{0x4}));
}

}  // namespace
}  // namespace kdom::devices::virtio
