// The frame a NIC sends when it has moved (live migration): a RARP broadcast naming its MAC, so
// that bridges and switches on the way learn the port it is behind now. RARP rather than a
// gratuitous ARP: it needs no IP address, which the VMM does not know.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kdom::devices::net {

inline constexpr uint16_t kEthertypeRarp = 0x8035;
// The Ethernet minimum without the FCS: a shorter frame is padded with zero bytes to it.
inline constexpr size_t kMinFrameBytes = 60;

// The Ethernet frame (no virtio-net header): broadcast from `mac`, ethertype RARP, then a
// "reverse request" (RFC 903) for Ethernet and IPv4 with `mac` as both sender and target
// hardware address and 0.0.0.0 as both protocol addresses; zero padding to kMinFrameBytes.
std::vector<uint8_t> rarp_announcement(const std::array<uint8_t, 6>& mac);

}  // namespace kdom::devices::net
