// Building a NIC's RARP announcement (announce.h).
#include "devices/net/announce.h"

#include <algorithm>

namespace kdom::devices::net {

namespace {
constexpr uint16_t kHardwareEthernet = 1;
constexpr uint16_t kProtocolIpv4 = 0x0800;
constexpr uint16_t kOpReverseRequest = 3;

void put_be16(std::vector<uint8_t>& frame, uint16_t value) {
  frame.push_back(static_cast<uint8_t>(value >> 8));
  frame.push_back(static_cast<uint8_t>(value));
}
}  // namespace

std::vector<uint8_t> rarp_announcement(const std::array<uint8_t, 6>& mac) {
  std::vector<uint8_t> frame;
  frame.reserve(kMinFrameBytes);
  frame.insert(frame.end(), 6, 0xff);  // to everyone on the segment
  frame.insert(frame.end(), mac.begin(), mac.end());
  put_be16(frame, kEthertypeRarp);
  put_be16(frame, kHardwareEthernet);
  put_be16(frame, kProtocolIpv4);
  frame.push_back(static_cast<uint8_t>(mac.size()));  // hardware address length
  frame.push_back(4);                                  // protocol address length
  put_be16(frame, kOpReverseRequest);
  frame.insert(frame.end(), mac.begin(), mac.end());  // sender hardware address
  frame.insert(frame.end(), 4, 0);                     // sender protocol address: unknown
  frame.insert(frame.end(), mac.begin(), mac.end());  // target hardware address: whose IP is asked
  frame.insert(frame.end(), 4, 0);                     // target protocol address: unknown
  frame.resize(std::max(frame.size(), kMinFrameBytes), 0);
  return frame;
}

}  // namespace kdom::devices::net
