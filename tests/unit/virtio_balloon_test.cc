// Tests of virtio-balloon: inflating gives the host memory back (seen with mincore on the real
// anonymous mapping behind guest RAM), hostile frame numbers (outside RAM, in a hole between
// regions, runs crossing into it) are refused and nothing else is touched, short and odd-length
// buffers, deflate and free page reporting, the statistics buffer (parsed, held, returned on
// request), the configuration space and the config interrupt on target changes.
#include "devices/virtio/balloon.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

namespace kdom::devices::virtio {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
// RAM: [0, 4 MiB) and [8 MiB, 12 MiB), a hole between them as the PCI hole is for a guest.
constexpr uint64_t kLowEnd = 4 * kMiB, kHighStart = 8 * kMiB, kHighEnd = 12 * kMiB;
constexpr uint16_t kSize = 8;
constexpr uint64_t kData = 0x10000;
constexpr uint64_t kTouched = 2 * kMiB;  // pages the tests fill and inflate
constexpr uint32_t kTouchedFrame = kTouched >> kBalloonPageShift;

struct Ring {
  uint64_t desc, avail, used;
};
constexpr Ring kRings[] = {{0x1000, 0x2000, 0x3000}, {0x4000, 0x5000, 0x6000}, {0x7000, 0x8000, 0x9000},
                           {0xa000, 0xb000, 0xc000}};

class VirtioBalloonTest : public ::testing::Test {
 protected:
  GuestMemory memory{{{0, kLowEnd}, {kHighStart, kHighEnd - kHighStart}}};
  std::vector<std::shared_ptr<Virtqueue>> queues;
  uint16_t next_avail[4] = {};
  uint16_t next_desc[4] = {};
  uint64_t next_data = kData;

  VirtioBalloonTest() {
    // khugepaged may fold a partly discarded huge page back into a whole one at any moment
    // (max_ptes_none), which would make the residency checks racy: these tests check what the
    // balloon discards, not the host's huge page policy, so this memory stays in small pages.
    auto all = memory.slice(0, kLowEnd);
    EXPECT_EQ(madvise(all.data(), memory.total_size(), MADV_NOHUGEPAGE), 0);
    for (const auto& ring : kRings)
      queues.push_back(std::make_shared<Virtqueue>(memory, VirtqueueConfig{kSize, ring.desc, ring.avail, ring.used, false, false}));
  }

  // Makes a chain of buffers available on queue `q`; each buffer's bytes are copied to guest
  // memory at fresh addresses (or `at` when given). Returns the head.
  uint16_t offer(int q, const std::vector<std::vector<uint8_t>>& buffers, bool writable = false) {
    const Ring& ring = kRings[q];
    const uint16_t head = next_desc[q] % kSize;
    next_desc[q] = static_cast<uint16_t>(next_desc[q] + buffers.size());
    for (size_t i = 0; i < buffers.size(); ++i) {
      const uint16_t index = static_cast<uint16_t>((head + i) % kSize);
      const uint64_t addr = next_data;
      next_data += std::max<size_t>(buffers[i].size(), 1) + 16;
      if (!buffers[i].empty()) memory.write(addr, buffers[i].data(), buffers[i].size());
      uint16_t flags = writable ? kVirtqDescFlagWrite : 0;
      if (i + 1 < buffers.size()) flags |= kVirtqDescFlagNext;
      memory.write_object(ring.desc + index * 16u,
                          VirtqDescriptor{addr, static_cast<uint32_t>(buffers[i].size()), flags,
                                          static_cast<uint16_t>((index + 1) % kSize)});
    }
    memory.write_object<uint16_t>(ring.avail + 4 + 2u * (next_avail[q] % kSize), head);
    memory.write_object<uint16_t>(ring.avail + 2, ++next_avail[q]);
    return head;
  }
  uint16_t offer_raw(int q, uint64_t addr, uint32_t len, uint16_t flags = 0) {
    const Ring& ring = kRings[q];
    const uint16_t head = next_desc[q]++ % kSize;
    memory.write_object(ring.desc + head * 16u, VirtqDescriptor{addr, len, flags, 0});
    memory.write_object<uint16_t>(ring.avail + 4 + 2u * head, head);
    memory.write_object<uint16_t>(ring.avail + 2, ++next_avail[q]);
    return head;
  }
  static std::vector<uint8_t> frames(const std::vector<uint32_t>& numbers) {
    std::vector<uint8_t> bytes(numbers.size() * 4);
    std::memcpy(bytes.data(), numbers.data(), bytes.size());
    return bytes;
  }
  uint16_t used_idx(int q) { return memory.read_object<uint16_t>(kRings[q].used + 2); }

  uint8_t* host(uint64_t gpa) { return memory.slice(gpa, 1).data(); }
  void fill(uint64_t gpa, uint64_t length, uint8_t value) { std::memset(host(gpa), value, length); }
  bool all_equal(uint64_t gpa, uint64_t length, uint8_t value) {
    auto bytes = memory.slice(gpa, length);
    return std::all_of(bytes.begin(), bytes.end(), [&](uint8_t b) { return b == value; });
  }
  // How many of the pages in [gpa, gpa + length) the host has backed (resident), per mincore.
  size_t resident_pages(uint64_t gpa, uint64_t length) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> vec((length + page - 1) / page);
    EXPECT_EQ(mincore(host(gpa), length, vec.data()), 0);
    return static_cast<size_t>(std::count_if(vec.begin(), vec.end(), [](unsigned char v) { return v & 1; }));
  }
};

TEST_F(VirtioBalloonTest, InflateGivesHostMemoryBackAndThePagesReadAsZero) {
  constexpr uint32_t kPages = 128;
  fill(kTouched, kPages * kBalloonPageSize, 0x5a);
  ASSERT_EQ(resident_pages(kTouched, kPages * kBalloonPageSize), kPages * kBalloonPageSize / sysconf(_SC_PAGESIZE));
  std::vector<uint32_t> numbers;
  for (uint32_t i = 0; i < kPages; ++i) numbers.push_back(kTouchedFrame + i);
  offer(0, {frames(numbers)});
  BalloonCounters counters;
  ASSERT_TRUE(BalloonDevice::serve_pages(memory, *queues[0], BalloonDevice::PageAction::kInflate, counters));
  EXPECT_EQ(counters.pages_inflated, kPages);
  EXPECT_EQ(counters.pages_refused, 0u);
  EXPECT_EQ(used_idx(0), 1);
  EXPECT_EQ(resident_pages(kTouched, kPages * kBalloonPageSize), 0u);
  EXPECT_TRUE(all_equal(kTouched, kPages * kBalloonPageSize, 0));
}

TEST_F(VirtioBalloonTest, HostileFramesAreRefusedAndNothingElseIsTouched) {
  fill(kTouched, 4 * kMiB - kTouched, 0x11);            // rest of low RAM, past the rings
  fill(kHighStart, kHighEnd - kHighStart, 0x22);          // all of high RAM
  const uint32_t last_low = static_cast<uint32_t>(kLowEnd >> kBalloonPageShift) - 1;
  const uint32_t first_hole = last_low + 1;
  const uint32_t first_high = static_cast<uint32_t>(kHighStart >> kBalloonPageShift);
  offer(0, {frames({first_hole, first_hole + 5, 0xffffffffu, static_cast<uint32_t>(kHighEnd >> kBalloonPageShift),
                    0x7fffffffu, last_low, first_hole})});  // the last two: a run crossing into the hole
  BalloonCounters counters;
  ASSERT_TRUE(BalloonDevice::serve_pages(memory, *queues[0], BalloonDevice::PageAction::kInflate, counters));
  EXPECT_EQ(counters.pages_inflated, 1u);  // last_low only
  EXPECT_EQ(counters.pages_refused, 6u);
  EXPECT_TRUE(all_equal(uint64_t{last_low} << kBalloonPageShift, kBalloonPageSize, 0));
  EXPECT_TRUE(all_equal(kTouched, (uint64_t{last_low} << kBalloonPageShift) - kTouched, 0x11));
  EXPECT_TRUE(all_equal(kHighStart, kHighEnd - kHighStart, 0x22));
  // High RAM works too.
  offer(0, {frames({first_high})});
  ASSERT_TRUE(BalloonDevice::serve_pages(memory, *queues[0], BalloonDevice::PageAction::kInflate, counters));
  EXPECT_EQ(counters.pages_inflated, 2u);
  EXPECT_TRUE(all_equal(kHighStart, kBalloonPageSize, 0));
  EXPECT_TRUE(all_equal(kHighStart + kBalloonPageSize, kBalloonPageSize, 0x22));
}

TEST_F(VirtioBalloonTest, ShortOddAndSplitBuffers) {
  fill(kTouched, 8 * kBalloonPageSize, 0x33);
  auto bytes = frames({kTouchedFrame, kTouchedFrame + 1});
  // 6 bytes: one whole frame number and half of the next (ignored).
  offer(0, {std::vector<uint8_t>(bytes.begin(), bytes.begin() + 6)});
  // 3 bytes: no frame number at all; an empty buffer; still returned to the driver.
  offer(0, {{1, 2, 3}});
  // A frame number split across two buffers of one chain is read whole.
  auto split = frames({kTouchedFrame + 2});
  offer(0, {{split[0], split[1]}, {split[2], split[3]}});
  // A device-writable buffer is not the driver's frame list: ignored.
  offer(0, {frames({kTouchedFrame + 3})}, /*writable=*/true);
  BalloonCounters counters;
  ASSERT_TRUE(BalloonDevice::serve_pages(memory, *queues[0], BalloonDevice::PageAction::kInflate, counters));
  EXPECT_EQ(used_idx(0), 4);
  EXPECT_EQ(counters.pages_inflated, 2u);
  EXPECT_TRUE(all_equal(kTouched, kBalloonPageSize, 0));
  EXPECT_TRUE(all_equal(kTouched + kBalloonPageSize, kBalloonPageSize, 0x33));
  EXPECT_TRUE(all_equal(kTouched + 2 * kBalloonPageSize, kBalloonPageSize, 0));
  EXPECT_TRUE(all_equal(kTouched + 3 * kBalloonPageSize, kBalloonPageSize, 0x33));
}

TEST_F(VirtioBalloonTest, MalformedChainIsReturnedAndTheQueueGoesOn) {
  offer_raw(0, kLowEnd - 8, 64);  // runs past the end of low RAM
  fill(kTouched, kBalloonPageSize, 0x44);
  offer(0, {frames({kTouchedFrame})});
  BalloonCounters counters;
  ASSERT_TRUE(BalloonDevice::serve_pages(memory, *queues[0], BalloonDevice::PageAction::kInflate, counters));
  EXPECT_EQ(counters.bad_requests, 1u);
  EXPECT_EQ(counters.pages_inflated, 1u);
  EXPECT_EQ(used_idx(0), 2);
}

TEST_F(VirtioBalloonTest, DeflateOnlyCounts) {
  fill(kTouched, kBalloonPageSize, 0x55);
  offer(1, {frames({kTouchedFrame, 0xffffffffu})});
  BalloonCounters counters;
  ASSERT_TRUE(BalloonDevice::serve_pages(memory, *queues[1], BalloonDevice::PageAction::kDeflate, counters));
  EXPECT_EQ(counters.pages_deflated, 2u);
  EXPECT_TRUE(all_equal(kTouched, kBalloonPageSize, 0x55));
}

TEST_F(VirtioBalloonTest, ReportedFreePagesAreDiscardedWholePagesOnly) {
  fill(kTouched, 4 * kBalloonPageSize, 0x66);
  // From the middle of page 0 to the middle of page 3: pages 1 and 2 are whole.
  offer_raw(3, kTouched + 100, static_cast<uint32_t>(3 * kBalloonPageSize), kVirtqDescFlagWrite);
  BalloonCounters counters;
  ASSERT_TRUE(BalloonDevice::serve_pages(memory, *queues[3], BalloonDevice::PageAction::kReport, counters));
  EXPECT_EQ(counters.pages_reported, 2u);
  EXPECT_TRUE(all_equal(kTouched, kBalloonPageSize, 0x66));
  EXPECT_TRUE(all_equal(kTouched + kBalloonPageSize, 2 * kBalloonPageSize, 0));
  EXPECT_TRUE(all_equal(kTouched + 3 * kBalloonPageSize, kBalloonPageSize, 0x66));
  EXPECT_EQ(memory.read_object<VirtqUsedElement>(kRings[3].used + 4).len, 0u);
}

TEST(BalloonStatsTest, ParsesTagValuePairs) {
  std::vector<uint8_t> bytes;
  auto entry = [&](uint16_t tag, uint64_t value) {
    for (int i = 0; i < 2; ++i) bytes.push_back(static_cast<uint8_t>(tag >> (8 * i)));
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(value >> (8 * i)));
  };
  entry(4, 123456789);
  entry(5, 1ULL << 40);
  entry(6, 7);
  entry(4, 42);      // repeated: the last value wins
  entry(0x1234, 9);  // unknown tag
  bytes.push_back(6);  // a partial entry at the end
  bytes.push_back(0);
  auto values = parse_balloon_stats(bytes);
  EXPECT_EQ(values.size(), 4u);
  EXPECT_EQ(values["free_memory"], 42u);
  EXPECT_EQ(values["total_memory"], 1ULL << 40);
  EXPECT_EQ(values["available_memory"], 7u);
  EXPECT_EQ(values["tag_4660"], 9u);
  EXPECT_TRUE(parse_balloon_stats({}).empty());
  EXPECT_TRUE(parse_balloon_stats(std::vector<uint8_t>(9, 0xff)).empty());
  EXPECT_EQ(balloon_stat_name(0), "swap_in");
  EXPECT_EQ(balloon_stat_name(9), "hugetlb_failures");
}

class BalloonDeviceTest : public VirtioBalloonTest {
 protected:
  std::vector<uint16_t> queue_interrupts;
  int config_interrupts = 0;
  void activate(BalloonDevice& device, uint64_t features, size_t queue_count) {
    std::vector<std::shared_ptr<Virtqueue>> given(queues.begin(), queues.begin() + static_cast<long>(queue_count));
    device.activate(memory, features, given, [&](uint16_t q) { queue_interrupts.push_back(q); },
                    [&] { ++config_interrupts; });
  }
  static std::vector<uint8_t> stat(uint16_t tag, uint64_t value) {
    std::vector<uint8_t> bytes(10);
    std::memcpy(bytes.data(), &tag, 2);
    std::memcpy(bytes.data() + 2, &value, 8);
    return bytes;
  }
};

TEST_F(BalloonDeviceTest, OffersStatsAlwaysAndOtherFeaturesWhenAsked) {
  BalloonDevice plain({});
  EXPECT_EQ(plain.type(), DeviceType::kBalloon);
  EXPECT_TRUE(plain.offered_features() & kFeatureVersion1);
  EXPECT_TRUE(plain.offered_features() & kBalloonFeatureStatsVq);
  EXPECT_FALSE(plain.offered_features() & (kBalloonFeatureDeflateOnOom | kBalloonFeaturePageReporting));
  EXPECT_EQ(plain.queue_max_sizes().size(), 3u);
  BalloonDevice full({0, true, true});
  EXPECT_TRUE(full.offered_features() & kBalloonFeatureDeflateOnOom);
  EXPECT_TRUE(full.offered_features() & kBalloonFeaturePageReporting);
  EXPECT_EQ(full.queue_max_sizes().size(), 4u);
}

TEST_F(BalloonDeviceTest, ConfigSpaceAndTargetChangesRaiseTheConfigInterrupt) {
  BalloonDevice device({1000, false, false});
  uint8_t config[16];
  device.read_config(0, config);
  EXPECT_EQ(config[0] | config[1] << 8, 1000);
  device.set_target_pages(2000);  // not running yet: nothing to interrupt
  EXPECT_EQ(config_interrupts, 0);
  activate(device, device.offered_features(), 3);
  device.set_target_pages(3000);
  EXPECT_EQ(config_interrupts, 1);
  device.set_target_pages(3000);  // unchanged: no interrupt
  EXPECT_EQ(config_interrupts, 1);
  device.read_config(0, std::span<uint8_t>(config, 4));
  EXPECT_EQ(config[0] | config[1] << 8, 3000);
  // The driver writes `actual`, in whole and in bytes; num_pages and beyond are not its to write.
  const uint8_t actual[4] = {0x34, 0x12, 0, 0};
  device.write_config(4, actual);
  EXPECT_EQ(device.actual_pages(), 0x1234u);
  const uint8_t byte = 0x56;
  device.write_config(5, std::span<const uint8_t>(&byte, 1));
  EXPECT_EQ(device.actual_pages(), 0x5634u);
  const uint8_t junk[8] = {9, 9, 9, 9, 9, 9, 9, 9};
  device.write_config(0, std::span<const uint8_t>(junk, 4));
  device.write_config(8, junk);
  device.write_config(1000, junk);
  EXPECT_EQ(device.target_pages(), 3000u);
  EXPECT_EQ(device.actual_pages(), 0x5634u);
  uint8_t far[4] = {1, 1, 1, 1};
  device.read_config(4096, far);
  EXPECT_EQ(far[0] | far[1] | far[2] | far[3], 0);
  device.reset();
  EXPECT_EQ(device.actual_pages(), 0u);
  device.set_target_pages(1);
  EXPECT_EQ(config_interrupts, 1);
}

TEST_F(BalloonDeviceTest, TheTargetReachedIsToldOncePerTarget) {
  BalloonDevice device({});
  std::vector<std::pair<uint32_t, uint32_t>> told;
  device.set_target_reached_handler([&](uint32_t actual, uint32_t target) { told.emplace_back(actual, target); });
  activate(device, device.offered_features(), 3);
  auto write_actual = [&](uint32_t pages) {
    uint8_t bytes[4];
    std::memcpy(bytes, &pages, 4);
    device.write_config(kBalloonConfigActual, bytes);
  };
  write_actual(0);  // the target it starts with (0) is not news
  EXPECT_TRUE(told.empty());
  device.set_target_pages(512);
  write_actual(256);  // on its way
  EXPECT_TRUE(told.empty());
  write_actual(512);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0], std::make_pair(512u, 512u));
  write_actual(512);  // the driver says it again: told once
  EXPECT_EQ(told.size(), 1u);
  device.set_target_pages(256);
  write_actual(256);
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[1], std::make_pair(256u, 256u));
  // A target the balloon already holds: the driver has nothing to do and writes nothing.
  device.set_target_pages(100);
  device.set_target_pages(256);
  ASSERT_EQ(told.size(), 3u);
  EXPECT_EQ(told[2], std::make_pair(256u, 256u));
}

TEST_F(BalloonDeviceTest, StatisticsAreKeptAndTheBufferReturnedOnRequest) {
  BalloonDevice device({});
  EXPECT_FALSE(device.request_stats());  // not running
  activate(device, device.offered_features(), 3);
  EXPECT_FALSE(device.request_stats());  // no buffer from the guest yet
  auto first = stat(4, 1000);
  auto second = stat(5, 5000);
  first.insert(first.end(), second.begin(), second.end());
  offer(2, {first});
  device.notify_queue(2);
  EXPECT_EQ(used_idx(2), 0);  // held
  auto stats = device.stats();
  EXPECT_TRUE(stats.updated.has_value());
  EXPECT_EQ(stats.values["free_memory"], 1000u);
  EXPECT_EQ(stats.values["total_memory"], 5000u);
  ASSERT_TRUE(device.request_stats());
  EXPECT_EQ(used_idx(2), 1);
  ASSERT_EQ(queue_interrupts, std::vector<uint16_t>{2});
  EXPECT_FALSE(device.request_stats());  // given back already
  // The guest answers with fresh values (an odd length: the partial entry is ignored).
  auto fresh = stat(4, 900);
  fresh.push_back(1);
  offer(2, {fresh});
  device.notify_queue(2);
  EXPECT_EQ(device.stats().values["free_memory"], 900u);
  EXPECT_EQ(device.stats().values.count("total_memory"), 0u);
  // A second buffer while one is held: the older one goes back.
  offer(2, {stat(4, 800)});
  device.notify_queue(2);
  EXPECT_EQ(used_idx(2), 2);
  EXPECT_EQ(device.stats().values["free_memory"], 800u);
}

TEST_F(BalloonDeviceTest, AStatisticsBufferQueuedBeforeActivationIsTakenThen) {
  // Linux notifies its first statistics buffer before DRIVER_OK, when notifications are dropped.
  BalloonDevice device({});
  offer(2, {stat(6, 4242)});
  activate(device, device.offered_features(), 3);
  EXPECT_EQ(device.stats().values["available_memory"], 4242u);
  EXPECT_TRUE(device.request_stats());
  EXPECT_EQ(used_idx(2), 1);
}

TEST_F(BalloonDeviceTest, QueuesAreNumberedByTheNegotiatedFeatures) {
  BalloonDevice device({0, false, true});
  // Without the statistics queue, reporting_vq is queue 2.
  activate(device, kFeatureVersion1 | kBalloonFeaturePageReporting, 4);
  fill(kTouched, kBalloonPageSize, 0x77);
  offer_raw(2, kTouched, static_cast<uint32_t>(kBalloonPageSize), kVirtqDescFlagWrite);
  device.notify_queue(2);
  EXPECT_EQ(device.counters().pages_reported, 1u);
  EXPECT_TRUE(all_equal(kTouched, kBalloonPageSize, 0));
  device.reset();
  // With it, reporting_vq is queue 3.
  activate(device, device.offered_features(), 4);
  fill(kTouched, kBalloonPageSize, 0x78);
  offer_raw(3, kTouched, static_cast<uint32_t>(kBalloonPageSize), kVirtqDescFlagWrite);
  device.notify_queue(3);
  EXPECT_EQ(device.counters().pages_reported, 2u);
  EXPECT_EQ(queue_interrupts.back(), 3);
}

TEST_F(BalloonDeviceTest, InflateAndDeflateThroughNotify) {
  BalloonDevice device({});
  fill(kTouched, 2 * kBalloonPageSize, 0x12);
  offer(0, {frames({kTouchedFrame})});
  device.notify_queue(0);  // not running: nothing happens
  EXPECT_EQ(used_idx(0), 0);
  activate(device, device.offered_features(), 3);
  device.notify_queue(0);
  device.notify_queue(7);  // no such queue: ignored
  EXPECT_EQ(used_idx(0), 1);
  offer(1, {frames({kTouchedFrame})});
  device.notify_queue(1);
  EXPECT_EQ(used_idx(1), 1);
  auto counters = device.counters();
  EXPECT_EQ(counters.pages_inflated, 1u);
  EXPECT_EQ(counters.pages_deflated, 1u);
  EXPECT_EQ(queue_interrupts, (std::vector<uint16_t>{0, 1}));
}

TEST_F(BalloonDeviceTest, ABrokenQueueThrowsAndIsNotUsedAgain) {
  BalloonDevice device({});
  queues[0] = std::make_shared<Virtqueue>(memory, VirtqueueConfig{kSize, kLowEnd - 16, 0x2000, 0x3000, false, false});
  activate(device, device.offered_features(), 3);
  EXPECT_THROW(device.notify_queue(0), VirtqueueError);
  EXPECT_NO_THROW(device.notify_queue(0));
}

TEST_F(BalloonDeviceTest, WrongQueueCountIsRefused) {
  BalloonDevice device({});
  EXPECT_THROW(activate(device, device.offered_features(), 2), Error);
}

}  // namespace
}  // namespace kdom::devices::virtio

// --balloon parsing and the checks on it (vm_config, kdom run's options).
#include "cli/run_options.h"
#include "vmm/vm_config.h"

namespace kdom::vmm {
namespace {

TEST(BalloonOptionsTest, ParsesEverySetting) {
  BalloonConfig plain = parse_balloon("");
  EXPECT_EQ(plain.target_mib, 0u);
  EXPECT_EQ(plain.stats_seconds, 0u);
  EXPECT_FALSE(plain.deflate_on_oom);
  BalloonConfig full = parse_balloon("target=128,stats=2,deflate-on-oom,free-page-reporting,id=b0");
  EXPECT_EQ(full.target_mib, 128u);
  EXPECT_EQ(full.stats_seconds, 2u);
  EXPECT_TRUE(full.deflate_on_oom);
  EXPECT_TRUE(full.free_page_reporting);
  EXPECT_EQ(full.id, "b0");
}

TEST(BalloonOptionsTest, RefusesBadSettings) {
  for (const char* text : {"target=", "target=-1", "target=12x", "target=99999999999999999999", "stats=100000",
                           "bogus", "target=1,,stats=1", "target=1,", "id=", "deflate-on-oom=yes"})
    EXPECT_THROW(parse_balloon(text), Error) << text;
  VmConfig config;
  config.kernel_path = "k";
  config.memory_mib = 256;
  config.balloon = parse_balloon("target=257");
  EXPECT_THROW(validate(config), Error);
  config.balloon = parse_balloon("target=256");
  EXPECT_NO_THROW(validate(config));
}

TEST(BalloonOptionsTest, KdomRunTakesBalloonWithOrWithoutSettingsAndControl) {
  auto run = [](std::vector<std::string> args) { return cli::parse_run_options(args, {"/guest"}).config; };
  VmConfig bare = run({"--kernel", "k", "--balloon", "--control", "/run/ctl"});
  ASSERT_TRUE(bare.balloon.has_value());
  EXPECT_EQ(bare.balloon->target_mib, 0u);
  EXPECT_EQ(bare.control_path, "/run/ctl");
  VmConfig last = run({"--kernel", "k", "--balloon"});
  EXPECT_TRUE(last.balloon.has_value());
  EXPECT_TRUE(last.control_path.empty());
  VmConfig set = run({"--kernel", "k", "--memory", "512", "--balloon", "target=64,stats=1", "--rng"});
  ASSERT_TRUE(set.balloon.has_value());
  EXPECT_EQ(set.balloon->target_mib, 64u);
  EXPECT_EQ(set.balloon->stats_seconds, 1u);
  EXPECT_TRUE(set.entropy);
  EXPECT_FALSE(run({"--kernel", "k"}).balloon.has_value());
  EXPECT_THROW(run({"--kernel", "k", "--balloon", "target=300"}), Error);  // above the default 256 MiB
}

}  // namespace
}  // namespace kdom::vmm
