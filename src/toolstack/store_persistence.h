// The store kept in the registry: what the registry holds of it when kdomd starts, and the
// hook that writes each change there (both sides of toolstack/store.h's persistence).
#pragma once

#include <map>
#include <string>

#include "toolstack/registry.h"
#include "toolstack/store.h"

namespace kdom::toolstack {

std::map<std::string, StoreNode> store_nodes_from(const Registry& registry);
Store::Persist store_persistence_in(Registry& registry);

}  // namespace kdom::toolstack
