// TAP devices that kdomd makes for a vif with bridge=NAME (xl's vif-bridge script, done in the
// daemon): a persistent TAP, up, enslaved to the Linux bridge; removed when the domain goes.
#pragma once

#include <string>

namespace kdom::toolstack {

// Throws Error naming the TAP or the bridge when either step fails (no such bridge...).
void create_bridged_tap(const std::string& tap, const std::string& bridge);
// Deletes a TAP made by create_bridged_tap; a missing one is not an error.
void remove_tap(const std::string& tap);

}  // namespace kdom::toolstack
