// Tests of virtio-net: queues are laid out by hand in a GuestMemory as a driver would, and a
// SOCK_SEQPACKET socketpair stands in for the TAP (one message per frame, header included).
// Checked: transmit gathers a frame from guest buffers; receive fills one chain or, with
// mergeable buffers, several (num_buffers); hostile chains fail alone; with no receive
// buffers the device holds the frame and stops watching the back end until the driver
// notifies; the driver's features decide the back end's offloads; config space, MACs and
// --net parsing; and with the VMM's event loop, that receiving pauses instead of spinning.
#include "devices/virtio/net.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "devices/net/announce.h"
#include "vmm/event_loop.h"
#include "vmm/vm_config.h"
#include "driver_queue.h"

namespace kdom::devices::virtio {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMemorySize = 1 << 20;
constexpr uint16_t kSize = 16;
constexpr uint64_t kRxDesc = 0x1000, kRxAvail = 0x2000, kRxUsed = 0x3000;
constexpr uint64_t kTxDesc = 0x4000, kTxAvail = 0x5000, kTxUsed = 0x6000;
constexpr uint64_t kBuffers = 0x10000;

// The fake TAP: a socketpair; the test holds the other end.
class SocketBackend : public net::NetBackend {
 public:
  SocketBackend(UniqueFd fd, std::vector<unsigned>* offloads) : fd_(std::move(fd)), offloads_(offloads) {}
  std::string describe() const override { return "test socket"; }
  int fd() const override { return fd_.get(); }
  void set_offload(unsigned flags) override { offloads_->push_back(flags); }
  ssize_t read_frame(std::span<uint8_t> buffer) override {
    ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    return n < 0 ? -errno : n;
  }
  ssize_t write_frame(std::span<const iovec> parts) override {
    msghdr message{};
    message.msg_iov = const_cast<iovec*>(parts.data());
    message.msg_iovlen = parts.size();
    ssize_t n = ::sendmsg(fd_.get(), &message, MSG_DONTWAIT);
    return n < 0 ? -errno : n;
  }

 private:
  UniqueFd fd_;
  std::vector<unsigned>* offloads_;
};

using test_driver::Buf;
using test_driver::DriverQueue;

std::vector<uint8_t> frame_with_payload(size_t payload, uint8_t seed, uint8_t flags = 0) {
  std::vector<uint8_t> frame(sizeof(NetHeader) + payload);
  NetHeader header{};
  header.flags = flags;
  header.num_buffers = 0xbeef;  // the device must overwrite it
  std::memcpy(frame.data(), &header, sizeof(header));
  for (size_t i = 0; i < payload; ++i) frame[sizeof(header) + i] = static_cast<uint8_t>(seed + i * 13);
  return frame;
}

class VirtioNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer.reset(fds[1]);
    int size = 1 << 20;
    ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    ::setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    device = std::make_unique<NetDevice>(NetDeviceConfig{default_mac(3), "net-a", {}},
                                         std::make_unique<SocketBackend>(UniqueFd(fds[0]), &offloads),
                                         [this](int fd, std::function<void()> on_readable) {
                                           watch_calls.push_back(fd);
                                           watching = static_cast<bool>(on_readable);
                                         });
    std::vector<uint8_t> marker(kMemorySize - kBuffers, 0xcc);
    memory.write(kBuffers, marker.data(), marker.size());
  }

  void activate(uint64_t features) {
    auto rx_queue = std::make_shared<Virtqueue>(memory, rx.config());
    auto tx_queue = std::make_shared<Virtqueue>(memory, tx.config());
    device->activate(memory, features, {rx_queue, tx_queue}, [this](uint16_t queue) { interrupts.push_back(queue); },
                     [] {});
  }
  void send_to_device(const std::vector<uint8_t>& frame) {
    ASSERT_EQ(::send(peer.get(), frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
  }
  // The next frame the device transmitted, or empty.
  std::vector<uint8_t> take_from_device() {
    std::vector<uint8_t> frame(NetDevice::kMaxFrameBytes);
    ssize_t n = ::recv(peer.get(), frame.data(), frame.size(), MSG_DONTWAIT);
    frame.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return frame;
  }
  std::vector<uint8_t> guest_bytes(uint64_t addr, size_t length) {
    std::vector<uint8_t> bytes(length);
    memory.read(addr, bytes.data(), length);
    return bytes;
  }

  GuestMemory memory{{{0, kMemorySize}}};
  DriverQueue rx{&memory, kRxDesc, kRxAvail, kRxUsed, kSize};
  DriverQueue tx{&memory, kTxDesc, kTxAvail, kTxUsed, kSize};
  UniqueFd peer;
  std::vector<unsigned> offloads;
  std::vector<int> watch_calls;
  bool watching = false;
  std::vector<uint16_t> interrupts;
  std::unique_ptr<NetDevice> device;
};

constexpr uint64_t kBaseFeatures = kFeatureVersion1;

// A moved domain's NIC announces itself out of its TAP: a zero virtio-net header (nothing to
// offload), then the RARP frame; whether the guest has activated the device or not.
TEST_F(VirtioNetTest, AnnounceSendsTheRarpFrameOutOfTheBackEnd) {
  device->announce();
  std::vector<uint8_t> expected(sizeof(NetHeader), 0);
  const auto frame = net::rarp_announcement(default_mac(3));
  expected.insert(expected.end(), frame.begin(), frame.end());
  EXPECT_EQ(take_from_device(), expected);
  activate(kBaseFeatures);
  device->announce();
  EXPECT_EQ(take_from_device(), expected);
  EXPECT_TRUE(interrupts.empty());  // the guest's queues were not touched
  EXPECT_EQ(device->stats().tx_frames, 0u);
}

TEST_F(VirtioNetTest, AnnounceThroughAClosedBackEndIsAnError) {
  device->release_host_side();
  try {
    device->announce();
    ADD_FAILURE() << "an announcement went out of a closed back end";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), HasSubstr("cannot send its announcement"));
  }
}

TEST_F(VirtioNetTest, ConfigSpaceHoldsTheMacAndLinkUp) {
  uint8_t config[12];
  device->read_config(0, config);
  EXPECT_EQ(std::vector<uint8_t>(config, config + 6), std::vector<uint8_t>({0x02, 0x6b, 0x64, 0x00, 0x00, 0x03}));
  EXPECT_EQ(config[6] | config[7] << 8, kNetStatusLinkUp);
  EXPECT_EQ(config[10], 0);  // beyond the config space: zero
  uint8_t status[2];
  device->read_config(6, status);
  EXPECT_EQ(status[0], 1);
  uint8_t far[4] = {1, 2, 3, 4};
  device->read_config(~uint64_t{0} - 1, far);
  EXPECT_EQ(std::vector<uint8_t>(far, far + 4), std::vector<uint8_t>(4, 0));
}

TEST_F(VirtioNetTest, OffersMacStatusMergeableBuffersAndOffloads) {
  const uint64_t features = device->offered_features();
  for (uint64_t bit : {kNetFeatureMac, kNetFeatureStatus, kNetFeatureMrgRxbuf, kNetFeatureCsum, kNetFeatureGuestCsum,
                       kNetFeatureHostTso4, kNetFeatureHostTso6, kNetFeatureGuestTso4, kNetFeatureGuestTso6,
                       kFeatureRingEventIdx, kFeatureRingIndirectDesc, kFeatureVersion1})
    EXPECT_NE(features & bit, 0u) << bit;
}

TEST_F(VirtioNetTest, OffloadFlagsFollowTheDriversFeatures) {
  EXPECT_EQ(net_offload_flags(0), 0u);
  // TSO without GUEST_CSUM is not allowed: nothing is offloaded.
  EXPECT_EQ(net_offload_flags(kNetFeatureGuestTso4 | kNetFeatureGuestTso6), 0u);
  EXPECT_EQ(net_offload_flags(kNetFeatureGuestCsum), net::kOffloadCsum);
  EXPECT_EQ(net_offload_flags(kNetFeatureGuestCsum | kNetFeatureGuestTso4), net::kOffloadCsum | net::kOffloadTso4);
  EXPECT_EQ(net_offload_flags(kNetFeatureGuestCsum | kNetFeatureGuestTso4 | kNetFeatureGuestTso6 | kNetFeatureGuestEcn),
            net::kOffloadCsum | net::kOffloadTso4 | net::kOffloadTso6 | net::kOffloadTsoEcn);
  // ECN alone means nothing without TSO; host-side features do not matter here.
  EXPECT_EQ(net_offload_flags(kNetFeatureGuestCsum | kNetFeatureGuestEcn | kNetFeatureHostTso4), net::kOffloadCsum);

  activate(kBaseFeatures | kNetFeatureGuestCsum | kNetFeatureGuestTso4);
  ASSERT_FALSE(offloads.empty());
  EXPECT_EQ(offloads.back(), net::kOffloadCsum | net::kOffloadTso4);
  device->reset();
  EXPECT_EQ(offloads.back(), 0u);
  EXPECT_FALSE(watching);
}

TEST_F(VirtioNetTest, TransmitsAFrameGatheredFromSeveralBuffers) {
  activate(kBaseFeatures);
  const auto frame = frame_with_payload(1000, 7);
  memory.write(kBuffers, frame.data(), 12);
  memory.write(kBuffers + 0x1000, frame.data() + 12, 500);
  memory.write(kBuffers + 0x2000, frame.data() + 512, 500);
  tx.add({{kBuffers, 12, false}, {kBuffers + 0x1000, 500, false}, {kBuffers + 0x2000, 500, false}});
  device->notify_queue(NetDevice::kTxQueue);
  EXPECT_EQ(take_from_device(), frame);
  ASSERT_EQ(tx.used_idx(), 1);
  EXPECT_EQ(tx.used_at(0).len, 0u);
  EXPECT_EQ(interrupts, std::vector<uint16_t>({NetDevice::kTxQueue}));
  EXPECT_EQ(device->stats().tx_frames, 1u);
  EXPECT_EQ(device->stats().tx_bytes, 1000u);
}

TEST_F(VirtioNetTest, HostileTransmitChainsFailAloneAndSendNothing) {
  activate(kBaseFeatures);
  const auto frame = frame_with_payload(100, 1);
  memory.write(kBuffers, frame.data(), frame.size());
  tx.add({{kBuffers, 112, false}, {kBuffers + 0x1000, 64, true}});  // a writable descriptor
  tx.add({{kBuffers, 8, false}});                                   // shorter than the header
  tx.add({{kBuffers, 112, false}});                                 // a good one after them
  device->notify_queue(NetDevice::kTxQueue);
  EXPECT_EQ(take_from_device(), frame);
  EXPECT_TRUE(take_from_device().empty());
  ASSERT_EQ(tx.used_idx(), 3);
  for (uint16_t i = 0; i < 3; ++i) EXPECT_EQ(tx.used_at(i).len, 0u);
  EXPECT_EQ(device->stats().bad_chains, 2u);
  EXPECT_EQ(device->stats().tx_frames, 1u);
  EXPECT_EQ(guest_bytes(kBuffers + 0x1000, 64), std::vector<uint8_t>(64, 0xcc));
}

TEST_F(VirtioNetTest, ReceivesAFrameIntoOneChain) {
  activate(kBaseFeatures);
  EXPECT_TRUE(watching);
  rx.add({{kBuffers, 2048, true}});
  const auto frame = frame_with_payload(300, 9);
  send_to_device(frame);
  device->on_backend_readable();
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(rx.used_at(0).len, frame.size());
  auto got = guest_bytes(kBuffers, frame.size());
  NetHeader header;
  std::memcpy(&header, got.data(), sizeof(header));
  EXPECT_EQ(header.num_buffers, 1);
  EXPECT_TRUE(std::equal(frame.begin() + 12, frame.end(), got.begin() + 12));
  EXPECT_EQ(guest_bytes(kBuffers + frame.size(), 16), std::vector<uint8_t>(16, 0xcc));
  EXPECT_EQ(interrupts, std::vector<uint16_t>({NetDevice::kRxQueue}));
  EXPECT_TRUE(watching);  // the back end is drained: wait for more
}

TEST_F(VirtioNetTest, MergeableBuffersSpreadAFrameOverSeveralChains) {
  activate(kBaseFeatures | kNetFeatureMrgRxbuf);
  for (int i = 0; i < 4; ++i) rx.add({{kBuffers + 0x1000u * i, 1000, true}});
  const auto frame = frame_with_payload(2500, 3);  // 2512 bytes: 1000 + 1000 + 512
  send_to_device(frame);
  device->on_backend_readable();
  ASSERT_EQ(rx.used_idx(), 3);
  EXPECT_EQ(rx.used_at(0).len, 1000u);
  EXPECT_EQ(rx.used_at(1).len, 1000u);
  EXPECT_EQ(rx.used_at(2).len, 512u);
  std::vector<uint8_t> got = guest_bytes(kBuffers, 1000);
  auto second = guest_bytes(kBuffers + 0x1000, 1000), third = guest_bytes(kBuffers + 0x2000, 512);
  got.insert(got.end(), second.begin(), second.end());
  got.insert(got.end(), third.begin(), third.end());
  NetHeader header;
  std::memcpy(&header, got.data(), sizeof(header));
  EXPECT_EQ(header.num_buffers, 3);
  EXPECT_TRUE(std::equal(frame.begin() + 12, frame.end(), got.begin() + 12));
  // The fourth buffer takes the next frame.
  const auto small = frame_with_payload(40, 5);
  send_to_device(small);
  device->on_backend_readable();
  ASSERT_EQ(rx.used_idx(), 4);
  EXPECT_EQ(rx.used_at(3).len, small.size());
}

TEST_F(VirtioNetTest, WithoutBuffersTheFrameWaitsAndTheBackEndIsNotWatched) {
  activate(kBaseFeatures | kNetFeatureMrgRxbuf);
  const auto frame = frame_with_payload(1500, 11);
  send_to_device(frame);
  device->on_backend_readable();
  EXPECT_FALSE(watching);
  EXPECT_EQ(rx.used_idx(), 0);
  // One buffer too small for the frame: still waiting, the buffer held back.
  rx.add({{kBuffers, 1000, true}});
  device->notify_queue(NetDevice::kRxQueue);
  EXPECT_FALSE(watching);
  EXPECT_EQ(rx.used_idx(), 0);
  rx.add({{kBuffers + 0x1000, 1000, true}});
  device->notify_queue(NetDevice::kRxQueue);
  ASSERT_EQ(rx.used_idx(), 2);
  EXPECT_EQ(rx.used_at(0).len + rx.used_at(1).len, frame.size());
  EXPECT_TRUE(watching);
  EXPECT_EQ(device->stats().rx_frames, 1u);
  EXPECT_EQ(device->stats().rx_dropped, 0u);
}

TEST_F(VirtioNetTest, HostileReceiveChainsFailAloneAndTheFrameGoesToTheNextGoodOne) {
  activate(kBaseFeatures | kNetFeatureMrgRxbuf);
  rx.add({{kBuffers, 8, true}});                                      // shorter than the header
  rx.add({{kBuffers + 0x1000, 64, false}, {kBuffers + 0x2000, 2048, true}});  // readable part
  rx.add({{kBuffers + 0x3000, 2048, true}});
  const auto frame = frame_with_payload(100, 2);
  send_to_device(frame);
  device->on_backend_readable();
  ASSERT_EQ(rx.used_idx(), 3);
  EXPECT_EQ(rx.used_at(0).len, 0u);
  EXPECT_EQ(rx.used_at(1).len, 0u);
  EXPECT_EQ(rx.used_at(2).len, frame.size());
  EXPECT_EQ(guest_bytes(kBuffers, 8), std::vector<uint8_t>(8, 0xcc));
  EXPECT_EQ(guest_bytes(kBuffers + 0x2000, 16), std::vector<uint8_t>(16, 0xcc));
  EXPECT_EQ(device->stats().bad_chains, 2u);
}

TEST_F(VirtioNetTest, WithoutMergeableBuffersATooLargeFrameIsDroppedAndTheChainKept) {
  activate(kBaseFeatures);
  rx.add({{kBuffers, 1526, true}});
  send_to_device(frame_with_payload(4000, 1));
  const auto fits = frame_with_payload(1000, 4);
  send_to_device(fits);
  device->on_backend_readable();
  EXPECT_EQ(device->stats().rx_dropped, 1u);
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(rx.used_at(0).len, fits.size());
  EXPECT_TRUE(watching);
}

TEST_F(VirtioNetTest, ChecksumFlagsReachTheGuestOnlyWithGuestCsum) {
  activate(kBaseFeatures);
  rx.add({{kBuffers, 2048, true}});
  send_to_device(frame_with_payload(64, 1, kNetHeaderFlagNeedsCsum));
  device->on_backend_readable();
  EXPECT_EQ(guest_bytes(kBuffers, 1)[0], 0);
  device->reset();
  rx = DriverQueue{&memory, kRxDesc, kRxAvail, kRxUsed, kSize};
  memory.write_object<uint16_t>(kRxUsed + 2, 0);
  activate(kBaseFeatures | kNetFeatureGuestCsum);
  rx.add({{kBuffers, 2048, true}});
  send_to_device(frame_with_payload(64, 1, kNetHeaderFlagNeedsCsum));
  device->on_backend_readable();
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(guest_bytes(kBuffers, 1)[0], kNetHeaderFlagNeedsCsum);
}

// Found in the event loop, a broken receive queue is reported to the transport at once (not
// thrown into the loop, and not left until the driver's next notification).
TEST_F(VirtioNetTest, ABrokenReceiveQueueIsReportedAndTheDeviceStaysUsable) {
  std::vector<std::string> failures;
  device->set_failure_handler([&](const std::string& reason) { failures.push_back(reason); });
  activate(kBaseFeatures);
  memory.write_object<uint16_t>(kRxAvail + 2, kSize + 5);  // more available than the queue holds
  send_to_device(frame_with_payload(64, 1));
  device->on_backend_readable();  // must not throw into the event loop
  EXPECT_FALSE(watching);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_THAT(failures[0], HasSubstr("queue 0"));
  EXPECT_THAT(failures[0], HasSubstr("avail idx"));
  device->notify_queue(NetDevice::kRxQueue);  // a stopped queue stays stopped, and quiet
  EXPECT_EQ(failures.size(), 1u);
  // Transmit still works; after a reset and a new activation, receive works again.
  const auto frame = frame_with_payload(50, 6);
  memory.write(kBuffers + 0x8000, frame.data(), frame.size());
  tx.add({{kBuffers + 0x8000, static_cast<uint32_t>(frame.size()), false}});
  device->notify_queue(NetDevice::kTxQueue);
  EXPECT_EQ(take_from_device(), frame);
  device->reset();
  memory.write_object<uint16_t>(kRxAvail + 2, 0);
  rx = DriverQueue{&memory, kRxDesc, kRxAvail, kRxUsed, kSize};
  activate(kBaseFeatures);
  rx.add({{kBuffers, 2048, true}});
  const auto later = frame_with_payload(64, 8);
  send_to_device(later);
  device->on_backend_readable();
  ASSERT_EQ(rx.used_idx(), 1);
}

// A forced hot-unplug: the device lets its TAP go at once (the other end sees it closed) and
// afterwards neither reads nor sends anything.
TEST_F(VirtioNetTest, ReleasingTheHostSideClosesTheBackEnd) {
  activate(kBaseFeatures);
  device->reset();
  device->release_host_side();
  char byte;
  EXPECT_EQ(::recv(peer.get(), &byte, 1, MSG_DONTWAIT), 0);  // end of stream: closed
  EXPECT_NE(device->backend_name().find("(closed)"), std::string::npos);
  device->on_backend_readable();
  device->notify_queue(NetDevice::kTxQueue);
  EXPECT_FALSE(watching);
}

TEST_F(VirtioNetTest, NothingHappensBeforeActivation) {
  send_to_device(frame_with_payload(64, 1));
  device->on_backend_readable();
  device->notify_queue(NetDevice::kRxQueue);
  device->notify_queue(NetDevice::kTxQueue);
  EXPECT_FALSE(watching);
  EXPECT_TRUE(watch_calls.empty());
}

// With the VMM's real event loop watching the back end, as Domain wires it: frames arrive in
// the loop's thread; with no buffers left the fd is no longer watched (the loop does not spin
// on a readable fd), and a receive notification from another thread (a vCPU) resumes it.
TEST_F(VirtioNetTest, InTheEventLoopReceivingPausesWithoutBuffersAndResumesOnNotify) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd host_end(fds[1]);
  vmm::EventLoop loop;
  std::atomic<int> wakeups{0};
  NetDevice looped(NetDeviceConfig{default_mac(0), "", {}}, std::make_unique<SocketBackend>(UniqueFd(fds[0]), &offloads),
                   [&](int fd, std::function<void()> on_readable) {
                     if (on_readable)
                       loop.add(fd, [&wakeups, handler = std::move(on_readable)] {
                         ++wakeups;
                         handler();
                       });
                     else
                       loop.remove(fd);
                   });
  // Stops the loop before `looped` goes away, also when an assertion returns early.
  struct StopLoop {
    vmm::EventLoop& loop;
    ~StopLoop() { loop.stop(); }
  } stop_loop{loop};
  loop.start();
  auto rx_queue = std::make_shared<Virtqueue>(memory, rx.config());
  auto tx_queue = std::make_shared<Virtqueue>(memory, tx.config());
  std::atomic<int> rx_interrupts{0};
  looped.activate(memory, kBaseFeatures | kNetFeatureMrgRxbuf, {rx_queue, tx_queue},
                  [&](uint16_t queue) { rx_interrupts += queue == NetDevice::kRxQueue; }, [] {});
  rx.add({{kBuffers, 2048, true}});
  const auto first = frame_with_payload(500, 1), second = frame_with_payload(600, 2);
  ASSERT_EQ(::send(host_end.get(), first.data(), first.size(), 0), static_cast<ssize_t>(first.size()));
  ASSERT_EQ(::send(host_end.get(), second.data(), second.size(), 0), static_cast<ssize_t>(second.size()));
  auto wait_for = [](const std::function<bool()>& done) {
    for (int i = 0; i < 400 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return done();
  };
  ASSERT_TRUE(wait_for([&] { return looped.stats().rx_frames == 1 && !looped.watching_backend(); }));
  EXPECT_EQ(rx.used_idx(), 1);
  EXPECT_GE(rx_interrupts.load(), 1);
  const int wakeups_when_paused = wakeups.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(wakeups.load(), wakeups_when_paused);  // the second frame waits in the socket
  rx.add({{kBuffers + 0x1000, 2048, true}});
  looped.notify_queue(NetDevice::kRxQueue);
  EXPECT_EQ(looped.stats().rx_frames, 2u);
  EXPECT_TRUE(looped.watching_backend());
  const auto third = frame_with_payload(100, 3);
  rx.add({{kBuffers + 0x2000, 2048, true}});
  ASSERT_EQ(::send(host_end.get(), third.data(), third.size(), 0), static_cast<ssize_t>(third.size()));
  EXPECT_TRUE(wait_for([&] { return looped.stats().rx_frames == 3; }));
}

TEST(NetMac, DefaultsAreLocallyAdministeredUnicastAndStablePerIndex) {
  EXPECT_EQ(default_mac(0), default_mac(0));
  EXPECT_NE(default_mac(0), default_mac(1));
  for (uint32_t index : {0u, 1u, 255u, 256u}) {
    EXPECT_EQ(default_mac(index)[0] & 0x03, 0x02);
  }
  EXPECT_EQ(format_mac(default_mac(258)), "02:6b:64:00:01:02");
}

TEST(NetConfigParse, ParsesTapFdMacAndId) {
  auto net = vmm::parse_net("tap=kdomtap0,mac=52:54:00:AB:cd:01,id=eth-a");
  EXPECT_EQ(net.tap, "kdomtap0");
  EXPECT_EQ(net.fd, -1);
  ASSERT_TRUE(net.mac.has_value());
  EXPECT_EQ(*net.mac, (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0x01}));
  EXPECT_EQ(net.id, "eth-a");
  auto by_fd = vmm::parse_net("fd=7");
  EXPECT_EQ(by_fd.fd, 7);
  EXPECT_FALSE(by_fd.mac.has_value());
}

TEST(NetConfigParse, RefusesBadInputWithOneClearMessage) {
  auto message = [](const std::string& text) {
    try {
      vmm::parse_net(text);
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string("accepted");
  };
  EXPECT_THAT(message("tap=t0,mac=52:54:00:12:34"), HasSubstr("malformed"));
  EXPECT_THAT(message("tap=t0,mac=52:54:00:12:34:zz"), HasSubstr("malformed"));
  EXPECT_THAT(message("tap=t0,mac=01:00:5e:00:00:01"), HasSubstr("multicast"));
  EXPECT_THAT(message("tap=t0,speed=10G"), HasSubstr("unknown setting 'speed=10G'"));
  EXPECT_THAT(message("mac=52:54:00:12:34:56"), HasSubstr("needs tap=NAME or fd=N"));
  EXPECT_THAT(message("tap=t0,fd=3"), HasSubstr("not both"));
  EXPECT_THAT(message("fd=three"), HasSubstr("file descriptor number"));
  EXPECT_THAT(message("tap="), HasSubstr("interface name"));
}

}  // namespace
}  // namespace kdom::devices::virtio

namespace kdom::devices::virtio {
namespace {

// --net ...,pps=2: two frames pass at once (a full bucket), the rest wait for the device's
// rate timer, one per half second, in both directions; nothing is dropped.
class VirtioNetRateLimitTest : public VirtioNetTest {
 protected:
  void SetUp() override {
    VirtioNetTest::SetUp();
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer.reset(fds[1]);
    device = std::make_unique<NetDevice>(NetDeviceConfig{default_mac(3), "net-a", RateLimit{0, 2}},
                                         std::make_unique<SocketBackend>(UniqueFd(fds[0]), &offloads),
                                         [this](int fd, std::function<void()> on_readable) {
                                           if (fd == peer_backend_fd_) return;
                                           timer_watched = static_cast<bool>(on_readable);
                                         });
    peer_backend_fd_ = fds[0];
  }
  int frames_at_peer() {
    int count = 0;
    while (!take_from_device().empty()) ++count;
    return count;
  }
  int peer_backend_fd_ = -1;
  bool timer_watched = false;
};

TEST_F(VirtioNetRateLimitTest, TransmitWaitsForTheRateTimer) {
  activate(kBaseFeatures);
  EXPECT_TRUE(timer_watched);
  const auto frame = frame_with_payload(100, 1);
  for (int i = 0; i < 6; ++i) {
    memory.write(kBuffers + 0x200 * i, frame.data(), frame.size());
    tx.add({{kBuffers + 0x200 * uint64_t(i), static_cast<uint32_t>(frame.size()), false}});
  }
  device->notify_queue(NetDevice::kTxQueue);
  EXPECT_EQ(frames_at_peer(), 2);
  EXPECT_EQ(tx.used_idx(), 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  device->on_rate_timer();
  const int later = frames_at_peer();
  EXPECT_GE(later, 1);
  EXPECT_LE(later, 2);
  EXPECT_EQ(tx.used_idx(), 2 + later);
  device->reset();
  EXPECT_FALSE(timer_watched);
}

TEST_F(VirtioNetRateLimitTest, ReceiveWaitsForTheRateTimerAndKeepsTheFrame) {
  activate(kBaseFeatures);
  for (int i = 0; i < 5; ++i) rx.add({{kBuffers + 0x1000 * uint64_t(i), 2048, true}});
  for (int i = 0; i < 4; ++i) send_to_device(frame_with_payload(200, static_cast<uint8_t>(i)));
  device->on_backend_readable();
  EXPECT_EQ(rx.used_idx(), 2);
  EXPECT_FALSE(device->watching_backend());  // held back: no wake-ups until the timer
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  device->on_rate_timer();
  const uint16_t delivered = rx.used_idx();
  EXPECT_GE(delivered, 3);
  EXPECT_LE(delivered, 4);
  // Frames arrive whole and in order.
  const auto third = frame_with_payload(200, 2);
  EXPECT_TRUE(std::equal(third.begin() + 12, third.end(), guest_bytes(kBuffers + 0x2000 + 12, 200).begin()));
  EXPECT_EQ(device->stats().rx_dropped, 0u);
}

}  // namespace
}  // namespace kdom::devices::virtio
