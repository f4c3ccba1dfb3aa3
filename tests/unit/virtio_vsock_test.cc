// Tests of virtio-vsock: packet parsing with hostile headers, the connection state machine
// (both directions, over real Unix sockets), credit accounting, and the --vsock/--hvc options.
#include "devices/virtio/vsock.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "vmm/vm_config.h"

namespace kdom::devices::virtio {
namespace {

constexpr uint64_t kGuestCid = 3;
constexpr uint16_t kSize = 16;
struct Rings {
  uint64_t desc, avail, used;
};
constexpr Rings kRings[3] = {{0x1000, 0x2000, 0x3000}, {0x4000, 0x5000, 0x6000}, {0x7000, 0x8000, 0x9000}};
constexpr uint64_t kRxBufferBytes = 44 + 4096;

VsockHeader guest_header(uint16_t op, uint32_t src_port = 5000, uint32_t dst_port = 80, uint32_t len = 0) {
  VsockHeader h;
  h.src_cid = kGuestCid;
  h.dst_cid = kVsockHostCid;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.len = len;
  h.type = kVsockTypeStream;
  h.op = op;
  h.buf_alloc = 64 * 1024;
  return h;
}

UniqueFd listen_unix(const std::string& path, int backlog = 4) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::listen(fd.get(), backlog), 0);
  return fd;
}

UniqueFd connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

std::string read_some(int fd) {
  char buffer[256];
  ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
}

class VsockTest : public ::testing::Test {
 protected:
  GuestMemory memory{{{0, 4 << 20}}};
  std::string dir = std::filesystem::temp_directory_path() / ("kdom-vsock-test-" + std::to_string(::getpid()));
  std::string path;
  std::unique_ptr<VsockDevice> device;
  std::vector<std::shared_ptr<Virtqueue>> queues;
  uint16_t next_avail[3] = {0, 0, 0};
  uint16_t rx_seen = 0;
  int interrupts = 0;

  void SetUp() override {
    std::filesystem::create_directories(dir);
    path = dir + "/v.sock";
    device = std::make_unique<VsockDevice>(VsockDeviceConfig{kGuestCid, path});
    for (const auto& r : kRings)
      queues.push_back(std::make_shared<Virtqueue>(memory, VirtqueueConfig{kSize, r.desc, r.avail, r.used, false, false}));
  }
  void TearDown() override {
    device.reset();
    std::filesystem::remove_all(dir);
  }
  void activate() {
    device->activate(memory, device->offered_features(), queues, [this](uint16_t) { ++interrupts; }, [] {});
  }
  static uint64_t buffer_address(uint16_t queue, uint16_t slot) { return 0x100000 + 0x2000u * (queue * kSize + slot); }
  // Makes one descriptor available on `queue`.
  void offer(uint16_t queue, uint64_t address, uint32_t length, bool writable) {
    const Rings& r = kRings[queue];
    uint16_t slot = next_avail[queue] % kSize;
    memory.write_object(r.desc + slot * 16u,
                        VirtqDescriptor{address, length, static_cast<uint16_t>(writable ? kVirtqDescFlagWrite : 0), 0});
    memory.write_object<uint16_t>(r.avail + 4 + 2u * slot, slot);
    memory.write_object<uint16_t>(r.avail + 2, ++next_avail[queue]);
  }
  void offer_rx(int count) {
    for (int i = 0; i < count; ++i) offer(0, buffer_address(0, next_avail[0] % kSize), kRxBufferBytes, true);
  }
  // Sends a packet on the transmit queue (header + payload in one buffer).
  void guest_send(const VsockHeader& header, const std::string& payload = {}) {
    uint64_t address = buffer_address(1, next_avail[1] % kSize);
    memory.write(address, &header, sizeof(header));
    memory.write(address + sizeof(header), payload.data(), payload.size());
    offer(1, address, static_cast<uint32_t>(sizeof(header) + payload.size()), false);
    device->notify_queue(VsockDevice::kTxQueue);
    device->process_backend();
  }
  // The packets the device has put on the receive queue since the last call.
  std::vector<std::pair<VsockHeader, std::string>> guest_receive() {
    std::vector<std::pair<VsockHeader, std::string>> out;
    uint16_t used = memory.read_object<uint16_t>(kRings[0].used + 2);
    for (; rx_seen != used; ++rx_seen) {
      auto element = memory.read_object<VirtqUsedElement>(kRings[0].used + 4 + 8u * (rx_seen % kSize));
      uint64_t address = buffer_address(0, static_cast<uint16_t>(element.id));
      auto header = memory.read_object<VsockHeader>(address);
      std::string data(header.len, '\0');
      EXPECT_EQ(element.len, sizeof(VsockHeader) + header.len);
      memory.read(address + sizeof(header), data.data(), data.size());
      out.emplace_back(header, data);
    }
    return out;
  }
};

DescriptorChain chain_of(std::vector<VirtqBuffer> buffers) { return DescriptorChain{0, std::move(buffers)}; }

TEST_F(VsockTest, ParsesAHeaderSplitAcrossBuffersAndItsPayload) {
  VsockHeader h = guest_header(kVsockOpRw, 1, 2, 5);
  memory.write(0x20000, &h, 20);
  memory.write(0x21000, reinterpret_cast<const uint8_t*>(&h) + 20, 24);
  memory.write(0x22000, "hello", 5);
  std::string problem;
  auto packet = parse_vsock_tx(memory, chain_of({{0x20000, 20, false}, {0x21000, 24, false}, {0x22000, 100, false}}),
                               &problem);
  ASSERT_TRUE(packet) << problem;
  EXPECT_EQ(packet->header.op, kVsockOpRw);
  ASSERT_EQ(packet->payload.size(), 1u);
  EXPECT_EQ(packet->payload[0].iov_len, 5u);
  EXPECT_EQ(std::memcmp(packet->payload[0].iov_base, "hello", 5), 0);
}

TEST_F(VsockTest, RefusesHostileLengths) {
  std::string problem;
  EXPECT_FALSE(parse_vsock_tx(memory, chain_of({{0x20000, 43, false}}), &problem));
  EXPECT_FALSE(parse_vsock_tx(memory, chain_of({{0x20000, 44, true}}), &problem));  // writable: not the packet
  VsockHeader h = guest_header(kVsockOpRw, 1, 2, 100);
  memory.write(0x20000, &h, sizeof(h));
  EXPECT_FALSE(parse_vsock_tx(memory, chain_of({{0x20000, 44 + 99, false}}), &problem));
  EXPECT_NE(problem.find("larger than the buffers"), std::string::npos);
  h.len = kVsockMaxPayload + 1;
  memory.write(0x20000, &h, sizeof(h));
  EXPECT_FALSE(parse_vsock_tx(memory, chain_of({{0x20000, 44 + kVsockMaxPayload + 1, false}}), &problem));
  h.len = 0xffffffff;
  memory.write(0x20000, &h, sizeof(h));
  EXPECT_FALSE(parse_vsock_tx(memory, chain_of({{0x20000, 44, false}}), &problem));
}

TEST_F(VsockTest, ConfigHoldsTheGuestCid) {
  uint8_t config[8];
  device->read_config(0, config);
  uint64_t cid;
  std::memcpy(&cid, config, 8);
  EXPECT_EQ(cid, kGuestCid);
  uint8_t beyond[4] = {1, 1, 1, 1};
  device->read_config(8, beyond);
  EXPECT_EQ(beyond[0], 0);
  EXPECT_EQ(device->queue_max_sizes().size(), 3u);
}

TEST_F(VsockTest, RefusesASocketPathThatExists) {
  EXPECT_THROW(VsockDevice(VsockDeviceConfig{kGuestCid, path}), Error);
  EXPECT_TRUE(std::filesystem::exists(path));  // not deleted
}

TEST_F(VsockTest, RemovesItsSocketWhenDestroyed) {
  device.reset();
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(VsockTest, DropsPacketsFromAnotherCidAndResetsBadOnes) {
  VsockHeader h = guest_header(kVsockOpRequest);
  h.src_cid = 7;
  device->handle_guest_packet({h, {}});
  EXPECT_EQ(device->control_packet_count(), 0u);

  h = guest_header(kVsockOpRequest);
  h.dst_cid = 9;  // not the host
  device->handle_guest_packet({h, {}});
  h = guest_header(kVsockOpRequest);
  h.type = 2;  // seqpacket: not offered
  device->handle_guest_packet({h, {}});
  device->handle_guest_packet({guest_header(99), {}});          // unknown op
  device->handle_guest_packet({guest_header(kVsockOpRw), {}});  // no such connection
  device->handle_guest_packet({guest_header(kVsockOpRequest, 5000, 4242), {}});  // nobody listens at PATH_4242
  ASSERT_EQ(device->control_packet_count(), 5u);
  for (const auto& reply : device->control_packets()) {
    // Copies: the header is packed, and gtest binds references to what it compares.
    const uint16_t op = reply.op;
    const uint64_t dst_cid = reply.dst_cid;
    const uint32_t dst_port = reply.dst_port;
    EXPECT_EQ(op, kVsockOpRst);
    EXPECT_EQ(dst_cid, kGuestCid);
    EXPECT_EQ(dst_port, 5000u);
  }
  device->handle_guest_packet({guest_header(kVsockOpRst), {}});  // a reset is never answered
  EXPECT_EQ(device->control_packet_count(), 5u);
  EXPECT_EQ(device->connection_count(), 0u);
}

TEST_F(VsockTest, GuestConnectsToAHostListenerAndDataFlowsBothWays) {
  UniqueFd listener = listen_unix(path + "_80");
  activate();
  offer_rx(8);
  guest_send(guest_header(kVsockOpRequest));
  auto replies = guest_receive();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].first.op, kVsockOpResponse);
  EXPECT_EQ(replies[0].first.src_port, 80u);
  EXPECT_EQ(replies[0].first.dst_port, 5000u);
  EXPECT_EQ(replies[0].first.buf_alloc, VsockConnection::kBufAlloc);
  UniqueFd host(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(host.valid());

  guest_send(guest_header(kVsockOpRw, 5000, 80, 5), "hello");
  EXPECT_EQ(read_some(host.get()), "hello");

  ASSERT_EQ(::write(host.get(), "world", 5), 5);
  device->process_backend();
  replies = guest_receive();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].first.op, kVsockOpRw);
  EXPECT_EQ(replies[0].second, "world");

  // The host closes: the guest hears SHUTDOWN(SEND); the guest closes: RST, connection gone.
  host.reset();
  device->process_backend();
  replies = guest_receive();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].first.op, kVsockOpShutdown);
  EXPECT_EQ(replies[0].first.flags, kVsockShutdownSend);
  VsockHeader shutdown = guest_header(kVsockOpShutdown);
  shutdown.flags = kVsockShutdownSend | kVsockShutdownRcv;
  guest_send(shutdown);
  replies = guest_receive();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].first.op, kVsockOpRst);
  EXPECT_EQ(device->connection_count(), 0u);
}

TEST_F(VsockTest, HostConnectsThroughTheSocketWithConnectAndGetsOk) {
  activate();
  offer_rx(8);
  UniqueFd client = connect_unix(path);
  ASSERT_EQ(::write(client.get(), "CONNECT 1234\nearly", 18), 18);
  device->process_backend();
  auto packets = guest_receive();
  ASSERT_EQ(packets.size(), 1u);
  const VsockHeader request = packets[0].first;
  EXPECT_EQ(request.op, kVsockOpRequest);
  EXPECT_EQ(request.dst_port, 1234u);
  EXPECT_EQ(request.dst_cid, kGuestCid);
  EXPECT_EQ(request.src_port, VsockDevice::kFirstLocalPort);
  EXPECT_EQ(read_some(client.get()), "");  // no OK before the guest accepts

  guest_send(guest_header(kVsockOpResponse, 1234, request.src_port));
  EXPECT_EQ(read_some(client.get()), "OK " + std::to_string(request.src_port) + "\n");
  packets = guest_receive();
  ASSERT_EQ(packets.size(), 1u);  // the bytes the client sent right after its CONNECT line
  EXPECT_EQ(packets[0].first.op, kVsockOpRw);
  EXPECT_EQ(packets[0].second, "early");
}

TEST_F(VsockTest, AGuestRefusalClosesTheHostConnection) {
  activate();
  offer_rx(4);
  UniqueFd client = connect_unix(path);
  ASSERT_EQ(::write(client.get(), "CONNECT 9\n", 10), 10);
  device->process_backend();
  auto packets = guest_receive();
  ASSERT_EQ(packets.size(), 1u);
  guest_send(guest_header(kVsockOpRst, 9, packets[0].first.src_port));
  EXPECT_EQ(device->connection_count(), 0u);
  char byte;
  EXPECT_EQ(::read(client.get(), &byte, 1), 0);  // end of file, no OK
}

TEST_F(VsockTest, AHostConnectionTheGuestIgnoresIsClosedAfterTheTimeout) {
  device.reset();
  device = std::make_unique<VsockDevice>(VsockDeviceConfig{kGuestCid, path, std::chrono::milliseconds(100)});
  activate();
  offer_rx(4);
  UniqueFd client = connect_unix(path);
  ASSERT_EQ(::write(client.get(), "CONNECT 7\n", 10), 10);
  device->process_backend();
  ASSERT_EQ(guest_receive().size(), 1u);  // the REQUEST, never answered
  EXPECT_EQ(device->connection_count(), 1u);
  for (int i = 0; i < 50 && device->connection_count() != 0; ++i) {  // until the timer fires
    pollfd ready{device->backend_fd(), POLLIN, 0};
    ::poll(&ready, 1, 100);
    device->process_backend();
  }
  EXPECT_EQ(device->connection_count(), 0u);
  auto packets = guest_receive();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].first.op, kVsockOpRst);
  char byte;
  EXPECT_EQ(::read(client.get(), &byte, 1), 0);
}

TEST_F(VsockTest, ABadConnectLineIsClosed) {
  activate();
  UniqueFd client = connect_unix(path);
  ASSERT_EQ(::write(client.get(), "HELLO 12\n", 9), 9);
  device->process_backend();
  char byte;
  EXPECT_EQ(::read(client.get(), &byte, 1), 0);
  EXPECT_EQ(device->connection_count(), 0u);
}

TEST_F(VsockTest, SendsNoMoreThanTheGuestsCreditAndAsksForMore) {
  UniqueFd listener = listen_unix(path + "_80");
  activate();
  offer_rx(8);
  VsockHeader request = guest_header(kVsockOpRequest);
  request.buf_alloc = 3;
  guest_send(request);
  UniqueFd host(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  guest_receive();
  ASSERT_EQ(::write(host.get(), "0123456789", 10), 10);
  device->process_backend();
  auto packets = guest_receive();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].second, "012");
  EXPECT_EQ(packets[1].first.op, kVsockOpCreditRequest);
  device->process_backend();
  EXPECT_TRUE(guest_receive().empty());  // no credit: nothing more
  VsockHeader update = guest_header(kVsockOpCreditUpdate);
  update.buf_alloc = 3;
  update.fwd_cnt = 3;
  guest_send(update);
  packets = guest_receive();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].second, "345");
  EXPECT_EQ(packets[1].first.op, kVsockOpCreditRequest);  // exhausted again
}

TEST_F(VsockTest, AGuestPastItsCreditLosesTheConnection) {
  UniqueFd listener = listen_unix(path + "_80");
  activate();
  offer_rx(16);
  guest_send(guest_header(kVsockOpRequest));
  UniqueFd host(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  guest_receive();
  // The host never reads: the socket buffer fills, then kdom's buffer (kBufAlloc), then RST.
  std::string chunk(4096, 'x');
  bool reset = false;
  size_t sent = 0;
  for (int i = 0; i < 1000 && !reset; ++i) {
    guest_send(guest_header(kVsockOpRw, 5000, 80, static_cast<uint32_t>(chunk.size())), chunk);
    for (const auto& [header, data] : guest_receive()) reset |= header.op == kVsockOpRst;
    if (!reset) sent += chunk.size();
  }
  EXPECT_TRUE(reset);
  EXPECT_GE(sent, VsockConnection::kBufAlloc);  // it was given all its credit first
  EXPECT_EQ(device->connection_count(), 0u);
}

TEST_F(VsockTest, ABrokenQueueIsReportedToTheTransportOnce) {
  std::vector<std::string> failures;
  device->set_failure_handler([&](const std::string& reason) { failures.push_back(reason); });
  activate();
  memory.write_object<uint16_t>(kRings[1].avail + 2, 1000);  // more chains than the queue holds
  device->notify_queue(VsockDevice::kTxQueue);
  device->process_backend();  // logs, stops serving, reports
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].find("virtio-vsock: "), std::string::npos) << failures[0];
  EXPECT_NE(failures[0].find("avail idx"), std::string::npos) << failures[0];
  device->notify_queue(VsockDevice::kTxQueue);
  device->process_backend();  // broken until reset: nothing served, nothing reported again
  EXPECT_EQ(failures.size(), 1u);
}

TEST_F(VsockTest, TheGuestsHalfCloseReachesTheHostAsEndOfFile) {
  UniqueFd listener = listen_unix(path + "_80");
  activate();
  offer_rx(8);
  guest_send(guest_header(kVsockOpRequest));
  UniqueFd host(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  guest_receive();
  guest_send(guest_header(kVsockOpRw, 5000, 80, 3), "bye");
  VsockHeader shutdown = guest_header(kVsockOpShutdown);
  shutdown.flags = kVsockShutdownSend;
  guest_send(shutdown);
  char buffer[8];
  EXPECT_EQ(::read(host.get(), buffer, sizeof(buffer)), 3);
  EXPECT_EQ(::read(host.get(), buffer, sizeof(buffer)), 0);  // end of file
  // The other direction still works.
  ASSERT_EQ(::write(host.get(), "reply", 5), 5);
  device->process_backend();
  auto packets = guest_receive();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].second, "reply");
  EXPECT_EQ(device->connection_count(), 1u);
}

TEST_F(VsockTest, ConnectionsAreCapped) {
  UniqueFd listener = listen_unix(path + "_80", 1024);
  for (uint32_t i = 0; i <= VsockDevice::kMaxConnections; ++i)
    device->handle_guest_packet({guest_header(kVsockOpRequest, 10000 + i), {}});
  EXPECT_EQ(device->connection_count(), VsockDevice::kMaxConnections);
  ASSERT_EQ(device->control_packet_count(), VsockDevice::kMaxConnections + 1);
  EXPECT_EQ(device->control_packets().front().op, kVsockOpResponse);
  EXPECT_EQ(device->control_packets().back().op, kVsockOpRst);
  EXPECT_EQ(device->control_packets().back().dst_port, 10000 + VsockDevice::kMaxConnections);
}

TEST(VsockConnectionTest, CreditAccounting) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd peer(fds[1]);
  VsockConnection connection(UniqueFd(fds[0]), 80, 5000, VsockConnection::State::kEstablished);
  EXPECT_EQ(connection.peer_credit(), 0u);  // nothing advertised yet
  VsockHeader h;
  h.buf_alloc = 1000;
  h.fwd_cnt = 0;
  connection.update_peer_credit(h);
  EXPECT_EQ(connection.peer_credit(), 1000u);
  connection.sent_to_guest(600);
  EXPECT_EQ(connection.peer_credit(), 400u);
  h.fwd_cnt = 500;
  connection.update_peer_credit(h);
  EXPECT_EQ(connection.peer_credit(), 900u);
  h.fwd_cnt = 0;
  h.buf_alloc = 100;  // the guest's figures say more is in flight than it allows: no credit
  connection.update_peer_credit(h);
  EXPECT_EQ(connection.peer_credit(), 0u);

  EXPECT_FALSE(connection.credit_update_due());
  std::string data(VsockConnection::kCreditUpdateThreshold, 'y');
  iovec part{data.data(), data.size()};
  ASSERT_TRUE(connection.receive_from_guest({&part, 1}));
  EXPECT_EQ(connection.fwd_cnt() + connection.pending_to_host(), data.size());
  std::vector<char> sink(data.size());
  size_t drained = 0;
  while (drained < data.size()) {
    ssize_t n = ::read(peer.get(), sink.data(), sink.size());
    ASSERT_GT(n, 0);
    drained += static_cast<size_t>(n);
    ASSERT_TRUE(connection.flush_to_host());
  }
  EXPECT_EQ(connection.fwd_cnt(), data.size());
  EXPECT_TRUE(connection.credit_update_due());
  VsockHeader header = connection.make_header(kGuestCid, kVsockOpCreditUpdate);
  EXPECT_EQ(header.fwd_cnt, data.size());
  EXPECT_FALSE(connection.credit_update_due());
}

TEST(VsockOptionsTest, ParsesAndRefusesBadInput) {
  auto vsock = vmm::parse_vsock("cid=3,socket=/tmp/v.sock,id=vs0");
  EXPECT_EQ(vsock.guest_cid, 3u);
  EXPECT_EQ(vsock.socket_path, "/tmp/v.sock");
  EXPECT_EQ(vsock.id, "vs0");
  EXPECT_EQ(vmm::parse_vsock("socket=/s,cid=4294967294").guest_cid, 4294967294u);
  EXPECT_THROW(vmm::parse_vsock("cid=2,socket=/s"), Error);
  EXPECT_THROW(vmm::parse_vsock("cid=4294967295,socket=/s"), Error);
  EXPECT_THROW(vmm::parse_vsock("cid=99999999999999999999999,socket=/s"), Error);
  EXPECT_THROW(vmm::parse_vsock("cid=3"), Error);
  EXPECT_THROW(vmm::parse_vsock("socket=/s"), Error);
  EXPECT_THROW(vmm::parse_vsock("cid=x3,socket=/s"), Error);
  EXPECT_THROW(vmm::parse_vsock("cid=3,socket=/s,port=1"), Error);

  auto hvc = vmm::parse_hvc("file:/tmp/a,b,id=con0");
  EXPECT_EQ(hvc.backend.kind, vmm::ConsoleKind::kFile);
  EXPECT_EQ(hvc.backend.path, "/tmp/a,b");
  EXPECT_EQ(hvc.id, "con0");
  EXPECT_EQ(vmm::parse_hvc("pty").backend.kind, vmm::ConsoleKind::kPty);
  EXPECT_THROW(vmm::parse_hvc("serial"), Error);
  vmm::VmConfig config;
  config.kernel_path = "k";
  config.hvc = vmm::parse_hvc("stdio");
  EXPECT_THROW(vmm::validate(config), Error);  // --console is stdio by default
  config.console.kind = vmm::ConsoleKind::kNone;
  EXPECT_NO_THROW(vmm::validate(config));
}

}  // namespace
}  // namespace kdom::devices::virtio
