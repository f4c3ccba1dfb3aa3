// The store in the registry: nodes to rows (path, value, permissions as xenstore writes them)
// and back.
#include "toolstack/store_persistence.h"

namespace kdom::toolstack {

std::map<std::string, StoreNode> store_nodes_from(const Registry& registry) {
  std::map<std::string, StoreNode> nodes;
  for (const StoredNode& stored : registry.store_nodes()) {
    StoreNode node;
    node.value = stored.value;
    try {
      node.permissions = StorePermissions::parse(stored.permissions);
    } catch (const Error& error) {
      throw Error("the store's node " + stored.path + " in the registry has bad permissions: " + error.what());
    }
    nodes[stored.path] = std::move(node);
  }
  return nodes;
}

Store::Persist store_persistence_in(Registry& registry) {
  return [&registry](const std::vector<Store::Change>& changes) {
    std::vector<StoredNode> written;
    std::vector<std::string> removed;
    for (const Store::Change& change : changes) {
      if (change.node)
        written.push_back({change.path, change.node->value, change.node->permissions.text()});
      else
        removed.push_back(change.path);
    }
    registry.store_apply(written, removed);
  };
}

}  // namespace kdom::toolstack
