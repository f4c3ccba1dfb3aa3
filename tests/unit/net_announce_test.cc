// Tests of the RARP announcement a moved NIC sends (devices/net/announce.h), byte by byte.
#include "devices/net/announce.h"

#include <gtest/gtest.h>

#include <vector>

namespace kdom::devices::net {
namespace {

TEST(RarpAnnouncement, IsABroadcastReverseRequestNamingTheMac) {
  const std::array<uint8_t, 6> mac = {0x02, 0x6b, 0x64, 0x00, 0x01, 0x2c};
  const std::vector<uint8_t> expected = {
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // Ethernet destination: broadcast
      0x02, 0x6b, 0x64, 0x00, 0x01, 0x2c,  // Ethernet source: the NIC
      0x80, 0x35,                          // ethertype: RARP
      0x00, 0x01,                          // hardware type: Ethernet
      0x08, 0x00,                          // protocol type: IPv4
      0x06,                                // hardware address length
      0x04,                                // protocol address length
      0x00, 0x03,                          // operation: reverse request
      0x02, 0x6b, 0x64, 0x00, 0x01, 0x2c,  // sender hardware address: the NIC
      0x00, 0x00, 0x00, 0x00,              // sender protocol address: none
      0x02, 0x6b, 0x64, 0x00, 0x01, 0x2c,  // target hardware address: the NIC
      0x00, 0x00, 0x00, 0x00,              // target protocol address: none
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // padding to 60 bytes
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  ASSERT_EQ(expected.size(), kMinFrameBytes);
  EXPECT_EQ(rarp_announcement(mac), expected);
}

TEST(RarpAnnouncement, CarriesWhicheverMacItIsGiven) {
  const std::array<uint8_t, 6> mac = {0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0};
  const auto frame = rarp_announcement(mac);
  ASSERT_EQ(frame.size(), 60u);
  for (size_t at : {6u, 22u, 32u}) EXPECT_EQ(std::vector<uint8_t>(frame.begin() + at, frame.begin() + at + 6),
                                              std::vector<uint8_t>(mac.begin(), mac.end()))
      << "at byte " << at;
}

}  // namespace
}  // namespace kdom::devices::net
