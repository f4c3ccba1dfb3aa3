// Tests of the virtio devices' pause point and saved state (quiesce/resume, save_state and
// load_state): each device's round trip into a fresh device, block requests in flight or held
// by the rate limiter carried across a save and served once, vsock's transport reset after a
// restore, balloon's statistics buffer, and hostile states refused with the device unchanged.
// Queues are laid out by hand in a GuestMemory as a driver would; a restore gives the new
// device new Virtqueues with the saved indices, as the transport does.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "devices/virtio/balloon.h"
#include "devices/virtio/block.h"
#include "devices/virtio/console.h"
#include "devices/virtio/entropy.h"
#include "devices/virtio/net.h"
#include "devices/virtio/vsock.h"
#include "eventually.h"
#include "snapshot/state_json.h"
#include "driver_queue.h"

namespace kdom::devices::virtio {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

constexpr uint64_t kMemorySize = 4 << 20;
constexpr uint64_t kBufferArea = 0x100000;

using test_driver::Buf;
using test_driver::DriverQueue;

// A new queue for the restored device, carrying the saved one's indices (as the transport does).
std::shared_ptr<Virtqueue> restored_queue(const GuestMemory& memory, const Virtqueue& saved) {
  auto queue = std::make_shared<Virtqueue>(memory, saved.config());
  queue->restore(saved.save());
  return queue;
}

// Interrupts and failures, raised from any thread.
struct Raised {
  std::mutex mutex;
  std::vector<uint16_t> interrupts;
  std::vector<std::string> failures;
  int config_interrupts = 0;
  QueueInterrupt interrupt() {
    return [this](uint16_t index) {
      std::lock_guard lock(mutex);
      interrupts.push_back(index);
    };
  }
  ConfigInterrupt config() {
    return [this] {
      std::lock_guard lock(mutex);
      ++config_interrupts;
    };
  }
  DeviceFailure failure() {
    return [this](const std::string& reason) {
      std::lock_guard lock(mutex);
      failures.push_back(reason);
    };
  }
  size_t interrupt_count(uint16_t index) {
    std::lock_guard lock(mutex);
    return static_cast<size_t>(std::count(interrupts.begin(), interrupts.end(), index));
  }
  int configs() {
    std::lock_guard lock(mutex);
    return config_interrupts;
  }
};

class DeviceStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<uint8_t> marker(kMemorySize - kBufferArea, 0xcc);
    memory.write(kBufferArea, marker.data(), marker.size());
  }
  uint64_t alloc(uint64_t len) {
    const uint64_t gpa = next_buffer;
    next_buffer += (len + 15) & ~uint64_t{15};
    return gpa;
  }
  uint64_t put(const void* bytes, size_t length) {
    const uint64_t gpa = alloc(length);
    memory.write(gpa, bytes, length);
    return gpa;
  }
  std::vector<uint8_t> guest_bytes(uint64_t gpa, size_t length) {
    std::vector<uint8_t> bytes(length);
    memory.read(gpa, bytes.data(), length);
    return bytes;
  }
  DriverQueue queue_at(uint64_t base, uint16_t size) { return DriverQueue{&memory, base, base + 0x1000, base + 0x2000, size}; }

  GuestMemory memory{std::vector<GuestRange>{{0, kMemorySize}}};
  uint64_t next_buffer = kBufferArea;
};

// --- Virtqueue::chain_at ----------------------------------------------------------------------

TEST_F(DeviceStateTest, ChainAtReadsAHeldChainAgainAndChecksIt) {
  DriverQueue driver = queue_at(0x1000, 16);
  const uint64_t a = alloc(64), b = alloc(64);
  const uint16_t head = driver.add({{a, 64, false}, {b, 64, true}});
  Virtqueue queue(memory, driver.config());
  ASSERT_TRUE(queue.pop());
  const DescriptorChain again = queue.chain_at(head);
  EXPECT_EQ(again.head, head);
  EXPECT_EQ(again.buffers, (std::vector<VirtqBuffer>{{a, 64, false}, {b, 64, true}}));
  EXPECT_EQ(queue.save().next_avail, 1);  // the ring's indices did not move
  // A chain that is malformed now is the caller's to return (the error names its head).
  memory.write_object(0x1000 + 16u * 5, VirtqDescriptor{kMemorySize - 8, 64, 0, 0});
  try {
    queue.chain_at(5);
    FAIL() << "a buffer outside RAM was accepted";
  } catch (const VirtqueueError& error) {
    EXPECT_EQ(error.head(), std::optional<uint16_t>(5));
  }
  EXPECT_FALSE(queue.broken());
  // A head outside the queue breaks it.
  try {
    queue.chain_at(16);
    FAIL() << "a head outside the queue was accepted";
  } catch (const VirtqueueError& error) {
    EXPECT_FALSE(error.head());
  }
  EXPECT_TRUE(queue.broken());
}

// --- virtio-blk -------------------------------------------------------------------------------

constexpr uint64_t kDiskSize = 1 << 20;

class BlockStateTest : public DeviceStateTest {
 protected:
  void SetUp() override {
    DeviceStateTest::SetUp();
    char dir_template[] = "/tmp/kdom-device-state-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir = dir_template;
    disk_path = dir + "/disk.img";
    std::ofstream(disk_path, std::ios::binary).write(std::string(kDiskSize, '\0').data(), kDiskSize);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  std::unique_ptr<BlockDevice> make_device(RateLimit limit = {}) {
    return std::make_unique<BlockDevice>(BlockDiskConfig{disk_path, false, "id", 1, limit, {}});
  }
  // A write of 4 KiB of `fill` at `sector`; returns the status byte's address.
  uint64_t submit_write(uint64_t sector, uint8_t fill, uint16_t* head = nullptr) {
    const BlockRequestHeader header{kBlockRequestOut, 0, sector};
    const uint64_t header_gpa = put(&header, sizeof(header));
    const std::vector<uint8_t> bytes(4096, fill);
    const uint64_t data_gpa = put(bytes.data(), bytes.size());
    const uint64_t status = alloc(1);
    memory.write_object<uint8_t>(status, 0xee);
    const uint16_t added = driver.add({{header_gpa, 16, false}, {data_gpa, 4096, false}, {status, 1, true}});
    if (head != nullptr) *head = added;
    return status;
  }
  std::vector<uint8_t> file_bytes(uint64_t offset, uint64_t length) {
    std::vector<uint8_t> bytes(length);
    std::ifstream in(disk_path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(length));
    return bytes;
  }
  bool wait_used(uint16_t count) {
    return eventually([&] { return driver.used_idx() == count; });
  }

  std::string dir, disk_path;
  DriverQueue driver{&memory, 0x1000, 0x2000, 0x3000, 64};
};

// The rate limiter (one request a second) holds the second of three writes when the device is
// saved; the restored device serves it first, then the third: each exactly once.
TEST_F(BlockStateTest, ARequestHeldByTheRateLimiterIsServedAfterARestore) {
  auto saved_device = make_device(RateLimit{0, 1});
  Raised raised;
  auto queue = std::make_shared<Virtqueue>(memory, driver.config());
  saved_device->activate(memory, saved_device->offered_features(), {queue}, raised.interrupt(), raised.config());
  std::vector<uint16_t> heads(3);
  std::vector<uint64_t> statuses;
  for (int i = 0; i < 3; ++i) statuses.push_back(submit_write(8 * uint64_t(i), static_cast<uint8_t>(0x10 + i), &heads[i]));
  saved_device->notify_queue(0);
  ASSERT_TRUE(wait_used(1));
  saved_device->quiesce();
  // Quiesced: nothing more is served, though the limiter refills meanwhile.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(driver.used_idx(), 1);
  const json state = saved_device->save_state();
  EXPECT_EQ(state, (json{{"held", json::array({{{"queue", 0}, {"head", heads[1]}}})}}));
  const VirtqueueState queue_state = queue->save();
  EXPECT_EQ(queue_state.next_avail, 2);  // the held request was taken from the ring
  saved_device.reset();  // the domain is gone (and the image lock with it)

  auto restored = make_device();
  restored->load_state(json::parse(state.dump()));
  auto new_queue = std::make_shared<Virtqueue>(memory, queue_state.config);
  new_queue->restore(queue_state);
  restored->activate(memory, restored->offered_features(), {new_queue}, raised.interrupt(), raised.config());
  ASSERT_TRUE(wait_used(3));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(driver.used_heads(), (std::vector<uint32_t>{heads[0], heads[1], heads[2]}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(memory.read_object<uint8_t>(statuses[i]), kBlockStatusOk) << "write " << i;
    EXPECT_EQ(file_bytes(8 * 512 * uint64_t(i), 4096), std::vector<uint8_t>(4096, static_cast<uint8_t>(0x10 + i)));
  }
  EXPECT_EQ(restored->save_state(), (json{{"held", json::array()}}));
  restored->reset();
}

// Quiesce lets the requests in flight complete; notifications while quiesced are not lost,
// resume serves them, and nothing is served twice.
TEST_F(BlockStateTest, QuiesceCompletesRequestsInFlightAndResumeGoesOn) {
  auto device = make_device();
  Raised raised;
  auto queue = std::make_shared<Virtqueue>(memory, driver.config());
  device->activate(memory, device->offered_features(), {queue}, raised.interrupt(), raised.config());
  std::vector<uint64_t> statuses;
  for (int i = 0; i < 12; ++i) statuses.push_back(submit_write(8 * uint64_t(i), static_cast<uint8_t>(0x40 + i)));
  device->notify_queue(0);
  device->quiesce();
  // Whatever was taken is finished: every used request's status is written.
  const uint16_t done = driver.used_idx();
  EXPECT_EQ(queue->save().next_avail, done) << "a request was taken and neither finished nor held";
  for (uint16_t i = 0; i < done; ++i) EXPECT_EQ(memory.read_object<uint8_t>(statuses[driver.used_at(i).id / 3]), kBlockStatusOk);
  for (int i = 12; i < 16; ++i) statuses.push_back(submit_write(8 * uint64_t(i), static_cast<uint8_t>(0x40 + i)));
  device->notify_queue(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(driver.used_idx(), done);
  device->resume();
  ASSERT_TRUE(wait_used(16));
  std::vector<uint32_t> heads = driver.used_heads();
  EXPECT_EQ(std::set<uint32_t>(heads.begin(), heads.end()).size(), 16u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(memory.read_object<uint8_t>(statuses[i]), kBlockStatusOk) << "write " << i;
    EXPECT_EQ(file_bytes(8 * 512 * uint64_t(i), 4096), std::vector<uint8_t>(4096, static_cast<uint8_t>(0x40 + i)));
  }
  device->reset();
}

// Pause and unpause in one process: a held request stays with the device and resume serves it.
TEST_F(BlockStateTest, ResumeServesTheRequestQuiesceHeld) {
  auto device = make_device(RateLimit{0, 1});
  Raised raised;
  auto queue = std::make_shared<Virtqueue>(memory, driver.config());
  device->activate(memory, device->offered_features(), {queue}, raised.interrupt(), raised.config());
  uint16_t first = 0, second = 0;
  submit_write(0, 0x71, &first);
  const uint64_t status = submit_write(8, 0x72, &second);
  device->notify_queue(0);
  ASSERT_TRUE(wait_used(1));
  device->quiesce();
  EXPECT_EQ(device->save_state()["held"].size(), 1u);
  device->resume();
  ASSERT_TRUE(wait_used(2));  // once the limiter (kept across the pause) allows it
  EXPECT_EQ(driver.used_heads(), (std::vector<uint32_t>{first, second}));
  EXPECT_EQ(memory.read_object<uint8_t>(status), kBlockStatusOk);
  device->reset();
}

TEST_F(BlockStateTest, HostileStatesAreRefusedWithTheDeviceUnchanged) {
  auto device = make_device();
  device->load_state(json{{"held", json::array({{{"queue", 0}, {"head", 7}}})}});
  const json before = device->save_state();
  const json hostile[] = {
      json::object(),
      json{{"held", 3}},
      json{{"held", json::array({{{"queue", 1}, {"head", 7}}})}},      // one queue only
      json{{"held", json::array({{{"queue", 0}, {"head", 256}}})}},    // beyond any queue
      json{{"held", json::array({{{"queue", 0}, {"head", -1}}})}},
      json{{"held", json::array({{{"queue", 0}, {"head", "7"}}})}},
      json{{"held", json::array({{{"queue", 0}, {"head", 1}}, {{"queue", 0}, {"head", 2}}})}},
      json{{"held", json::array({json::array()})}},
  };
  for (const json& state : hostile) {
    EXPECT_THROW(device->load_state(state), snapshot::StateError) << state.dump();
    EXPECT_EQ(device->save_state(), before) << state.dump();
  }
  // A head inside the largest queue but outside the one the driver set up: refused at
  // activation, before any worker starts.
  device->load_state(json{{"held", json::array({{{"queue", 0}, {"head", 64}}})}});
  Raised raised;
  auto queue = std::make_shared<Virtqueue>(memory, driver.config());
  try {
    device->activate(memory, device->offered_features(), {queue}, raised.interrupt(), raised.config());
    FAIL() << "a held head outside the queue was accepted";
  } catch (const snapshot::StateError& error) {
    EXPECT_THAT(error.what(), HasSubstr("'held' head 64"));
    EXPECT_THAT(error.what(), HasSubstr(disk_path));
  }
  EXPECT_EQ(driver.used_idx(), 0);
  // A queue the driver did not enable.
  std::filesystem::copy_file(disk_path, dir + "/two.img");
  auto two = std::make_unique<BlockDevice>(BlockDiskConfig{dir + "/two.img", true, "id", 2, {}, {}});
  two->load_state(json{{"held", json::array({{{"queue", 1}, {"head", 0}}})}});
  EXPECT_THROW(two->activate(memory, two->offered_features(), {queue, nullptr}, raised.interrupt(), raised.config()),
               snapshot::StateError);
}

// --- virtio-console ---------------------------------------------------------------------------

class ConsoleStateTest : public DeviceStateTest {
 protected:
  std::vector<std::shared_ptr<Virtqueue>> activate(ConsoleDevice& device, Raised& raised) {
    std::vector<std::shared_ptr<Virtqueue>> queues{std::make_shared<Virtqueue>(memory, rx.config()),
                                                   std::make_shared<Virtqueue>(memory, tx.config())};
    device.activate(memory, device.offered_features(), queues, raised.interrupt(), raised.config());
    return queues;
  }
  void guest_writes(ConsoleDevice& device, const std::string& text) {
    tx.add({{put(text.data(), text.size()), static_cast<uint32_t>(text.size()), false}});
    device.notify_queue(ConsoleDevice::kTransmitQueue);
  }
  static std::span<const uint8_t> bytes(const std::string& text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
  }

  DriverQueue rx = queue_at(0x1000, 16);
  DriverQueue tx = queue_at(0x4000, 16);
  std::string output;
  ConsoleDevice::Output sink = [this](std::span<const uint8_t> data) { output.append(data.begin(), data.end()); };
};

TEST_F(ConsoleStateTest, PendingInputCrossesASaveAndReachesTheGuest) {
  ConsoleDevice saved(sink);
  Raised raised;
  auto queues = activate(saved, raised);
  guest_writes(saved, "login: ");
  EXPECT_EQ(saved.send_input(bytes("root\n")), 5u);  // no receive buffer: it waits
  saved.quiesce();
  const json state = saved.save_state();
  EXPECT_EQ(state, (json{{"pending_input", "726f6f740a"}, {"guest_spoke", true}}));

  ConsoleDevice restored(sink);
  restored.load_state(state);
  const uint64_t buffer = alloc(64);
  rx.add({{buffer, 64, true}});
  restored.activate(memory, restored.offered_features(),
                    {restored_queue(memory, *queues[0]), restored_queue(memory, *queues[1])}, raised.interrupt(),
                    raised.config());
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(rx.used_at(0).len, 5u);
  EXPECT_EQ(guest_bytes(buffer, 5), std::vector<uint8_t>({'r', 'o', 'o', 't', '\n'}));
  EXPECT_EQ(restored.save_state()["pending_input"], "");
}

TEST_F(ConsoleStateTest, QuiescedInputWaitsForResume) {
  ConsoleDevice device(sink);
  Raised raised;
  activate(device, raised);
  guest_writes(device, "$ ");
  const uint64_t buffer = alloc(16);
  rx.add({{buffer, 16, true}});
  device.quiesce();
  device.send_input(bytes("ls\n"));
  guest_writes(device, "more");
  EXPECT_EQ(rx.used_idx(), 0);
  EXPECT_EQ(output, "$ ");
  device.resume();
  EXPECT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(output, "$ more");
  EXPECT_EQ(guest_bytes(buffer, 3), std::vector<uint8_t>({'l', 's', '\n'}));
}

TEST_F(ConsoleStateTest, HostileStatesAreRefusedWithTheDeviceUnchanged) {
  ConsoleDevice device(sink);
  device.load_state(json{{"pending_input", "6869"}, {"guest_spoke", true}});
  const json before = device.save_state();
  const json hostile[] = {
      json::array(),
      json{{"pending_input", "6869"}},
      json{{"pending_input", "686"}, {"guest_spoke", true}},
      json{{"pending_input", "zz"}, {"guest_spoke", true}},
      json{{"pending_input", std::string(2 * ConsoleDevice::kMaxPendingInput + 2, 'a')}, {"guest_spoke", true}},
      json{{"pending_input", "6869"}, {"guest_spoke", 1}},
  };
  for (const json& state : hostile) {
    EXPECT_THROW(device.load_state(state), snapshot::StateError) << state.dump().substr(0, 80);
    EXPECT_EQ(device.save_state(), before);
  }
}

// --- virtio-rng -------------------------------------------------------------------------------

TEST_F(DeviceStateTest, EntropyServesNothingWhileQuiescedAndCatchesUpOnResume) {
  EntropyDevice device;
  DriverQueue driver = queue_at(0x1000, 16);
  Raised raised;
  device.activate(memory, device.offered_features(), {std::make_shared<Virtqueue>(memory, driver.config())},
                  raised.interrupt(), raised.config());
  device.quiesce();
  driver.add({{alloc(32), 32, true}});
  device.notify_queue(0);
  EXPECT_EQ(driver.used_idx(), 0);
  device.resume();
  ASSERT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(driver.used_at(0).len, 32u);
  EXPECT_EQ(device.save_state(), json::object());
}

// --- virtio-balloon ---------------------------------------------------------------------------

class BalloonStateTest : public DeviceStateTest {
 protected:
  static constexpr uint64_t kFeatures = kFeatureVersion1 | kBalloonFeatureStatsVq;

  std::vector<std::shared_ptr<Virtqueue>> queues_for(const std::vector<DriverQueue*>& drivers) {
    std::vector<std::shared_ptr<Virtqueue>> queues;
    for (DriverQueue* driver : drivers) queues.push_back(std::make_shared<Virtqueue>(memory, driver->config()));
    return queues;
  }
  // A statistics buffer: free_memory and total_memory.
  uint16_t push_stats(uint64_t free_memory, uint64_t total_memory) {
    uint8_t entries[20];
    const uint16_t free_tag = 4, total_tag = 5;
    std::memcpy(entries, &free_tag, 2);
    std::memcpy(entries + 2, &free_memory, 8);
    std::memcpy(entries + 10, &total_tag, 2);
    std::memcpy(entries + 12, &total_memory, 8);
    return stats.add({{put(entries, sizeof(entries)), sizeof(entries), false}});
  }

  DriverQueue inflate = queue_at(0x1000, 16);
  DriverQueue deflate = queue_at(0x4000, 16);
  DriverQueue stats = queue_at(0x7000, 16);
};

TEST_F(BalloonStateTest, TheStatisticsBufferAndTargetCrossASave) {
  BalloonDevice saved(BalloonDeviceConfig{256, false, false});
  Raised raised;
  const uint16_t stats_head = push_stats(1000, 5000);
  auto queues = queues_for({&inflate, &deflate, &stats});
  saved.activate(memory, kFeatures, queues, raised.interrupt(), raised.config());
  const uint32_t actual = 100;
  saved.write_config(kBalloonConfigActual, {reinterpret_cast<const uint8_t*>(&actual), 4});
  saved.quiesce();
  saved.set_target_pages(512);  // while paused: its interrupt waits
  EXPECT_EQ(raised.configs(), 0);
  const json state = saved.save_state();
  EXPECT_EQ(state["stats_buffer_held"], true);
  EXPECT_EQ(state["stats_buffer_head"], stats_head);
  EXPECT_EQ(state["stats"], (json{{"free_memory", 1000}, {"total_memory", 5000}}));
  EXPECT_EQ(state["target_pages"], 512);
  EXPECT_EQ(state["actual_pages"], 100);
  EXPECT_EQ(state["config_interrupt_pending"], true);
  EXPECT_EQ(state["stats_updated"], true);

  BalloonDevice restored(BalloonDeviceConfig{0, false, false});
  restored.load_state(json::parse(state.dump()));
  Raised after;
  restored.activate(memory, kFeatures,
                    {restored_queue(memory, *queues[0]), restored_queue(memory, *queues[1]),
                     restored_queue(memory, *queues[2])},
                    after.interrupt(), after.config());
  EXPECT_EQ(after.configs(), 1);  // the driver hears of the target set while paused
  EXPECT_EQ(restored.target_pages(), 512u);
  EXPECT_EQ(restored.actual_pages(), 100u);
  const BalloonStats values = restored.stats();
  EXPECT_EQ(values.values, (std::map<std::string, uint64_t>{{"free_memory", 1000}, {"total_memory", 5000}}));
  EXPECT_TRUE(values.updated);
  // The buffer the saved device held is returned when fresh values are wanted.
  EXPECT_EQ(stats.used_idx(), 0);
  EXPECT_TRUE(restored.request_stats());
  ASSERT_EQ(stats.used_idx(), 1);
  EXPECT_EQ(stats.used_at(0).id, stats_head);
  EXPECT_EQ(restored.save_state()["stats_buffer_held"], false);
}

TEST_F(BalloonStateTest, QuiescedBalloonWaitsForResume) {
  BalloonDevice device(BalloonDeviceConfig{0, false, false});
  Raised raised;
  push_stats(1, 2);
  device.activate(memory, kFeatures, queues_for({&inflate, &deflate, &stats}), raised.interrupt(), raised.config());
  device.quiesce();
  EXPECT_FALSE(device.request_stats());
  const uint32_t frame = 0x200;  // in RAM
  inflate.add({{put(&frame, 4), 4, false}});
  device.notify_queue(0);
  device.set_target_pages(1);
  EXPECT_EQ(inflate.used_idx(), 0);
  EXPECT_EQ(raised.configs(), 0);
  device.resume();
  EXPECT_EQ(inflate.used_idx(), 1);
  EXPECT_EQ(device.counters().pages_inflated, 1u);
  EXPECT_EQ(raised.configs(), 1);
  EXPECT_TRUE(device.request_stats());
}

TEST_F(BalloonStateTest, HostileStatesAreRefusedWithTheDeviceUnchanged) {
  BalloonDevice device(BalloonDeviceConfig{7, false, false});
  const json good = device.save_state();
  auto with = [&](const json& changes) {
    json state = good;
    state.update(changes);
    return state;
  };
  auto with_one = [&](const std::string& key, const json& value) { return with(json{{key, value}}); };
  const json hostile[] = {
      with_one("target_pages", uint64_t{1} << 32),
      with_one("actual_pages", -1),
      with_one("stats_buffer_held", "yes"),
      with({{"stats_buffer_head", BalloonDevice::kQueueSize}, {"stats_buffer_held", true}}),
      with_one("stats", json{{"free_memory", "lots"}}),
      with_one("stats", json{{"no such statistic", 1}}),
      with_one("stats", json{{"tag_99999", 1}}),
      with({{"stats_age_ms", uint64_t{1} << 60}, {"stats_updated", true}}),
      with_one("counters", json{{"pages_inflated", 1}}),
      json{{"target_pages", 1}},
  };
  for (const json& state : hostile) {
    EXPECT_THROW(device.load_state(state), snapshot::StateError) << state.dump();
    EXPECT_EQ(device.save_state(), good) << state.dump();
  }
  EXPECT_NO_THROW(device.load_state(with_one("stats", json{{"tag_12", 3}, {"swap_in", 4}})));
  // A statistics buffer outside the queue the driver set up, or with no statistics queue.
  device.load_state(with({{"stats_buffer_head", 20}, {"stats_buffer_held", true}}));
  Raised raised;
  EXPECT_THROW(device.activate(memory, kFeatures, queues_for({&inflate, &deflate, &stats}), raised.interrupt(),
                               raised.config()),
               snapshot::StateError);
  device.load_state(with({{"stats_buffer_head", 2}, {"stats_buffer_held", true}}));
  EXPECT_THROW(device.activate(memory, kFeatureVersion1, queues_for({&inflate, &deflate, &stats}), raised.interrupt(),
                               raised.config()),
               snapshot::StateError);
}

// --- virtio-net -------------------------------------------------------------------------------

// The fake TAP: one end of a SOCK_SEQPACKET socketpair (one message per frame).
class SocketBackend : public net::NetBackend {
 public:
  explicit SocketBackend(UniqueFd fd) : fd_(std::move(fd)) {}
  std::string describe() const override { return "test socket"; }
  int fd() const override { return fd_.get(); }
  void set_offload(unsigned) override {}
  ssize_t read_frame(std::span<uint8_t> buffer) override {
    const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    return n < 0 ? -errno : n;
  }
  ssize_t write_frame(std::span<const iovec> parts) override {
    msghdr message{};
    message.msg_iov = const_cast<iovec*>(parts.data());
    message.msg_iovlen = parts.size();
    const ssize_t n = ::sendmsg(fd_.get(), &message, MSG_DONTWAIT);
    return n < 0 ? -errno : n;
  }

 private:
  UniqueFd fd_;
};

class NetStateTest : public DeviceStateTest {
 protected:
  // A device on a fresh socketpair; `peer` is the host's end.
  std::unique_ptr<NetDevice> make_device(MacAddress mac = default_mac(1)) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer.reset(fds[1]);
    return std::make_unique<NetDevice>(NetDeviceConfig{mac, "net", {}}, std::make_unique<SocketBackend>(UniqueFd(fds[0])),
                                       BackendWatch{});
  }
  std::vector<uint8_t> frame(size_t payload, uint8_t seed) {
    std::vector<uint8_t> bytes(sizeof(NetHeader) + payload, 0);
    for (size_t i = 0; i < payload; ++i) bytes[sizeof(NetHeader) + i] = static_cast<uint8_t>(seed + i * 7);
    return bytes;
  }
  void host_sends(const std::vector<uint8_t>& bytes) {
    ASSERT_EQ(::send(peer.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  }

  static constexpr uint64_t kFeatures = kFeatureVersion1 | kNetFeatureMrgRxbuf;
  UniqueFd peer;
  DriverQueue rx = queue_at(0x1000, 16);
  DriverQueue tx = queue_at(0x4000, 16);
};

// A frame larger than the one receive buffer the guest offered: the device holds both the frame
// and the chain when saved; the restored device takes the chain again and, with a second
// buffer, delivers the frame across both.
TEST_F(NetStateTest, AHeldFrameAndItsPartialChainCrossASave) {
  auto saved = make_device();
  Raised raised;
  std::vector<std::shared_ptr<Virtqueue>> queues{std::make_shared<Virtqueue>(memory, rx.config()),
                                                 std::make_shared<Virtqueue>(memory, tx.config())};
  saved->activate(memory, kFeatures, queues, raised.interrupt(), raised.config());
  const uint64_t first = alloc(1024), second = alloc(1024);
  const uint16_t first_head = rx.add({{first, 1024, true}});
  const std::vector<uint8_t> sent = frame(1500, 3);
  host_sends(sent);
  saved->on_backend_readable();
  EXPECT_EQ(rx.used_idx(), 0);
  saved->quiesce();
  const json state = saved->save_state();
  EXPECT_EQ(state["mac"], format_mac(default_mac(1)));
  EXPECT_EQ(state["frame"], snapshot::bytes_to_hex(sent));
  EXPECT_EQ(state["rx_chains"], json::array({{{"head", first_head}}}));
  EXPECT_EQ(state["tx_held"], false);
  saved.reset();

  auto restored = make_device();
  restored->load_state(json::parse(state.dump()));
  const uint16_t second_head = rx.add({{second, 1024, true}});
  restored->activate(memory, kFeatures, {restored_queue(memory, *queues[0]), restored_queue(memory, *queues[1])},
                     raised.interrupt(), raised.config());
  ASSERT_EQ(rx.used_idx(), 2);
  EXPECT_EQ(rx.used_heads(), (std::vector<uint32_t>{first_head, second_head}));
  std::vector<uint8_t> received = guest_bytes(first, 1024);
  const std::vector<uint8_t> rest = guest_bytes(second, sent.size() - 1024);
  received.insert(received.end(), rest.begin(), rest.end());
  NetHeader header;
  std::memcpy(&header, received.data(), sizeof(header));
  EXPECT_EQ(header.num_buffers, 2);
  EXPECT_TRUE(std::equal(sent.begin() + sizeof(NetHeader), sent.end(), received.begin() + sizeof(NetHeader)));
  EXPECT_EQ(restored->stats().rx_frames, 1u);
}

TEST_F(NetStateTest, QuiescedNetReceivesAndSendsNothingUntilResume) {
  auto device = make_device();
  Raised raised;
  device->activate(memory, kFeatures,
                   {std::make_shared<Virtqueue>(memory, rx.config()), std::make_shared<Virtqueue>(memory, tx.config())},
                   raised.interrupt(), raised.config());
  device->quiesce();
  rx.add({{alloc(2048), 2048, true}});
  host_sends(frame(100, 1));
  device->on_backend_readable();
  device->notify_queue(NetDevice::kRxQueue);
  const std::vector<uint8_t> out = frame(60, 9);
  tx.add({{put(out.data(), out.size()), static_cast<uint32_t>(out.size()), false}});
  device->notify_queue(NetDevice::kTxQueue);
  EXPECT_EQ(rx.used_idx(), 0);
  EXPECT_EQ(tx.used_idx(), 0);
  device->resume();
  EXPECT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(tx.used_idx(), 1);
  std::vector<uint8_t> got(4096);
  EXPECT_EQ(::recv(peer.get(), got.data(), got.size(), MSG_DONTWAIT), static_cast<ssize_t>(out.size()));
}

TEST_F(NetStateTest, HostileStatesAreRefusedWithTheDeviceUnchanged) {
  auto device = make_device();
  const json good{{"mac", format_mac(default_mac(1))},
                  {"frame", snapshot::bytes_to_hex(frame(10, 1))},
                  {"rx_chains", json::array({{{"head", 3}}})},
                  {"tx_held", false},
                  {"tx_held_head", 0}};
  auto with = [&](const json& changes) {
    json state = good;
    state.update(changes);
    return state;
  };
  auto with_one = [&](const std::string& key, const json& value) { return with(json{{key, value}}); };
  const json hostile[] = {
      with_one("mac", format_mac(default_mac(2))),
      with_one("frame", "00"),
      with_one("frame", std::string(2 * (NetDevice::kMaxFrameBytes + 1), '0')),
      with_one("rx_chains", json::array({{{"head", 3}}, {{"head", 3}}})),
      with_one("rx_chains", json::array({{{"head", NetDevice::kQueueSize}}})),
      with_one("rx_chains", json::array({3})),
      with({{"frame", ""}, {"rx_chains", json::array({{{"head", 1}}})}}),
      with({{"tx_held", true}, {"tx_held_head", 70000}}),
  };
  const json before = device->save_state();
  for (const json& state : hostile) {
    EXPECT_THROW(device->load_state(state), snapshot::StateError) << state.dump().substr(0, 120);
    EXPECT_EQ(device->save_state(), before);
  }
  // Heads outside the queues the driver set up, or several chains without mergeable buffers.
  Raised raised;
  auto queues = [&] {
    return std::vector<std::shared_ptr<Virtqueue>>{std::make_shared<Virtqueue>(memory, rx.config()),
                                                   std::make_shared<Virtqueue>(memory, tx.config())};
  };
  device->load_state(with_one("rx_chains", json::array({{{"head", 16}}})));
  EXPECT_THROW(device->activate(memory, kFeatures, queues(), raised.interrupt(), raised.config()), snapshot::StateError);
  device->load_state(with_one("rx_chains", json::array({{{"head", 1}}, {{"head", 2}}})));
  EXPECT_THROW(device->activate(memory, kFeatureVersion1, queues(), raised.interrupt(), raised.config()),
               snapshot::StateError);
  EXPECT_EQ(rx.used_idx(), 0);
}

// --- virtio-vsock -----------------------------------------------------------------------------

class VsockStateTest : public DeviceStateTest {
 protected:
  void SetUp() override {
    DeviceStateTest::SetUp();
    dir = std::filesystem::temp_directory_path() / ("kdom-vsock-state-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::unique_ptr<VsockDevice> make_device(uint64_t cid, const std::string& name) {
    return std::make_unique<VsockDevice>(VsockDeviceConfig{cid, dir + "/" + name});
  }
  std::vector<std::shared_ptr<Virtqueue>> queues() {
    return {std::make_shared<Virtqueue>(memory, rx.config()), std::make_shared<Virtqueue>(memory, tx.config()),
            std::make_shared<Virtqueue>(memory, events.config())};
  }

  std::string dir;
  DriverQueue rx = queue_at(0x1000, 16);
  DriverQueue tx = queue_at(0x4000, 16);
  DriverQueue events = queue_at(0x7000, 16);
};

TEST_F(VsockStateTest, ARestoredDeviceSendsTheGuestATransportReset) {
  auto saved = make_device(3, "a.sock");
  Raised raised;
  saved->activate(memory, saved->offered_features(), queues(), raised.interrupt(), raised.config());
  saved->quiesce();
  const json state = saved->save_state();
  EXPECT_EQ(state, (json{{"guest_cid", 3}, {"spare_rx", false}, {"spare_rx_head", 0}}));
  saved.reset();

  auto restored = make_device(3, "b.sock");
  restored->load_state(state);
  const uint64_t event = alloc(8);
  memory.write_object<uint32_t>(event, 0xffffffff);
  const uint16_t head = events.add({{event, 8, true}});
  restored->activate(memory, restored->offered_features(), queues(), raised.interrupt(), raised.config());
  restored->process_backend();
  ASSERT_EQ(events.used_idx(), 1);
  EXPECT_EQ(events.used_at(0).id, head);
  EXPECT_EQ(events.used_at(0).len, 4u);
  EXPECT_EQ(memory.read_object<uint32_t>(event), kVsockEventTransportReset);
  EXPECT_EQ(raised.interrupt_count(VsockDevice::kEventQueue), 1u);
  EXPECT_FALSE(restored->transport_reset_pending());
  restored->process_backend();  // once only
  EXPECT_EQ(events.used_idx(), 1);
}

// No event buffer yet when restored: the reset waits for the guest to offer one.
TEST_F(VsockStateTest, TheTransportResetWaitsForAnEventBuffer) {
  auto device = make_device(3, "c.sock");
  device->load_state(json{{"guest_cid", 3}, {"spare_rx", false}, {"spare_rx_head", 0}});
  Raised raised;
  device->activate(memory, device->offered_features(), queues(), raised.interrupt(), raised.config());
  device->process_backend();
  EXPECT_TRUE(device->transport_reset_pending());
  const uint64_t small = alloc(2), event = alloc(4);
  events.add({{small, 2, true}});  // too small for an event: returned unused
  events.add({{event, 4, true}});
  device->notify_queue(VsockDevice::kEventQueue);
  device->process_backend();
  ASSERT_EQ(events.used_idx(), 2);
  EXPECT_EQ(events.used_at(0).len, 0u);
  EXPECT_EQ(events.used_at(1).len, 4u);
  EXPECT_FALSE(device->transport_reset_pending());
  // A device that was never saved sends no reset.
  auto fresh = make_device(4, "d.sock");
  DriverQueue other_events = queue_at(0xa000, 16);
  other_events.add({{alloc(4), 4, true}});
  std::vector<std::shared_ptr<Virtqueue>> fresh_queues{std::make_shared<Virtqueue>(memory, queue_at(0xd000, 16).config()),
                                                       std::make_shared<Virtqueue>(memory, queue_at(0x10000, 16).config()),
                                                       std::make_shared<Virtqueue>(memory, other_events.config())};
  fresh->activate(memory, fresh->offered_features(), fresh_queues, raised.interrupt(), raised.config());
  fresh->process_backend();
  EXPECT_EQ(other_events.used_idx(), 0);
}

TEST_F(VsockStateTest, AStateForAnotherGuestCidOrAHostileOneIsRefused) {
  auto device = make_device(3, "e.sock");
  try {
    device->load_state(json{{"guest_cid", 4}, {"spare_rx", false}, {"spare_rx_head", 0}});
    FAIL() << "a state for CID 4 was loaded into CID 3's device";
  } catch (const snapshot::StateError& error) {
    EXPECT_THAT(error.what(), HasSubstr("guest_cid"));
    EXPECT_THAT(error.what(), HasSubstr("4"));
  }
  EXPECT_THROW(device->load_state(json{{"guest_cid", 3}, {"spare_rx", true}, {"spare_rx_head", 256}}),
               snapshot::StateError);
  EXPECT_THROW(device->load_state(json{{"guest_cid", "3"}}), snapshot::StateError);
  // Nothing was loaded: activation sends no reset.
  Raised raised;
  events.add({{alloc(4), 4, true}});
  device->activate(memory, device->offered_features(), queues(), raised.interrupt(), raised.config());
  device->process_backend();
  EXPECT_EQ(events.used_idx(), 0);
  device->reset();
  // A spare receive chain outside the receive queue is refused at activation.
  device->load_state(json{{"guest_cid", 3}, {"spare_rx", true}, {"spare_rx_head", 16}});
  EXPECT_THROW(device->activate(memory, device->offered_features(), queues(), raised.interrupt(), raised.config()),
               snapshot::StateError);
}

}  // namespace
}  // namespace kdom::devices::virtio
