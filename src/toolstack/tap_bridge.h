// TAP devices that kdomd makes for a vif with bridge=NAME (xl's vif-bridge script, done in the
// daemon): a persistent TAP, up, enslaved to the Linux bridge; removed when the domain goes.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace kdom::toolstack {

// The TAP's own MAC is fe: and the guest NIC's last five bytes. A bridge takes the lowest of
// its ports' MACs (unless one was set on it), so a bridge without an uplink would change its
// MAC with a random one whenever a domain came or went, or was restored or migrated onto a
// new TAP, and its guests would send to a gateway MAC that no longer answers. This one is the
// same for the same NIC, and above any real NIC's, whose first byte has 0x02 clear or is lower.
// Throws Error naming the TAP or the bridge when a step fails (no such bridge...).
void create_bridged_tap(const std::string& tap, const std::string& bridge, const std::array<uint8_t, 6>& guest_mac);
// Deletes a TAP made by create_bridged_tap; a missing one is not an error.
void remove_tap(const std::string& tap);

}  // namespace kdom::toolstack
