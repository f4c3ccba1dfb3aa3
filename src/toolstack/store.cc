// Store: one map of nodes by path (sorted, so a node's children and subtree are a range of it),
// transactions as overlays on it, a generation counter for their conflict checks.
#include "toolstack/store.h"

#include <algorithm>

namespace kdom::toolstack {

using nlohmann::json;

namespace {

bool valid_path_character(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '@' || c == '.' || c == ':' || c == '/';
}

// "/a/b" for "/a/b/c"; "/" for "/a".
std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// True when `path` is `ancestor` or below it.
bool is_within(const std::string& path, const std::string& ancestor) {
  if (ancestor == "/") return true;
  return path == ancestor || (path.size() > ancestor.size() && path.compare(0, ancestor.size(), ancestor) == 0 &&
                              path[ancestor.size()] == '/');
}

std::string prefix_of_children(const std::string& path) { return path == "/" ? "/" : path + "/"; }

std::string domain_home(uint32_t domain) { return "/local/domain/" + std::to_string(domain); }

}  // namespace

char StorePermissions::access_of(uint32_t domain) const {
  if (domain == Store::kHost || domain == owner()) return 'b';
  char access = entries.front().access;
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i].domain == domain) access = entries[i].access;
  return access;
}

bool StorePermissions::may_read(uint32_t domain) const {
  const char access = access_of(domain);
  return access == 'r' || access == 'b';
}

bool StorePermissions::may_write(uint32_t domain) const {
  const char access = access_of(domain);
  return access == 'w' || access == 'b';
}

std::string StorePermissions::text() const {
  std::string out;
  for (const Entry& entry : entries) {
    if (!out.empty()) out += ' ';
    out += entry.access + std::to_string(entry.domain);
  }
  return out;
}

StorePermissions StorePermissions::parse(const std::string& text) {
  StorePermissions permissions;
  permissions.entries.clear();
  size_t at = 0;
  while (at < text.size()) {
    if (text[at] == ' ') {
      ++at;
      continue;
    }
    size_t end = text.find(' ', at);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(at, end - at);
    at = end;
    if (word.size() < 2 || std::string_view("nrwb").find(word[0]) == std::string_view::npos ||
        word.find_first_not_of("0123456789", 1) != std::string::npos || word.size() > 11)
      throw Error("bad permission '" + word + "': it is n, r, w or b and a domain id (as 'r5')");
    const uint64_t domain = std::stoull(word.substr(1));
    if (domain > UINT32_MAX) throw Error("bad permission '" + word + "': no such domain id");
    permissions.entries.push_back({static_cast<uint32_t>(domain), word[0]});
  }
  if (permissions.entries.empty()) throw Error("permissions need at least the owner's entry (as 'n0')");
  if (permissions.entries.size() > 64) throw Error("at most 64 permission entries");
  return permissions;
}

Store::Store(std::map<std::string, StoreNode> nodes, Persist persist, Limits limits)
    : persist_(std::move(persist)), limits_(limits), nodes_(std::move(nodes)) {
  if (!nodes_.count("/")) nodes_["/"] = StoreNode{};
  for (auto& [path, node] : nodes_) {
    node.generation = generation_;
    ++owned_[node.permissions.owner()];
  }
}

std::string Store::canonical(uint32_t caller, const std::string& path) {
  if (path.empty()) throw Error("a store path cannot be empty");
  std::string absolute = path.front() == '/' ? path : domain_home(caller) + "/" + path;
  if (absolute.size() > kMaxPathBytes)
    throw Error("store path is longer than " + std::to_string(kMaxPathBytes) + " bytes");
  for (char c : absolute)
    if (!valid_path_character(c))
      throw Error("store path '" + absolute.substr(0, 100) + "' has a character other than letters, digits and -_@.:/");
  if (absolute != "/" && (absolute.back() == '/' || absolute.find("//") != std::string::npos))
    throw Error("store path '" + absolute.substr(0, 100) + "' has an empty component");
  return absolute;
}

const StoreNode* Store::find(const std::string& path, const Transaction* transaction) const {
  if (transaction) {
    if (auto it = transaction->overlay.find(path); it != transaction->overlay.end())
      return it->second ? &*it->second : nullptr;
  }
  auto it = nodes_.find(path);
  return it == nodes_.end() ? nullptr : &it->second;
}

std::vector<std::string> Store::child_names(const std::string& path, const Transaction* transaction) const {
  const std::string prefix = prefix_of_children(path);
  std::set<std::string> names;
  for (auto it = nodes_.lower_bound(prefix); it != nodes_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
       ++it) {
    if (it->first.size() > prefix.size() && it->first.find('/', prefix.size()) == std::string::npos)
      names.insert(it->first.substr(prefix.size()));
  }
  if (transaction) {
    for (auto it = transaction->overlay.lower_bound(prefix);
         it != transaction->overlay.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      if (it->first.size() <= prefix.size() || it->first.find('/', prefix.size()) != std::string::npos) continue;
      if (it->second)
        names.insert(it->first.substr(prefix.size()));
      else
        names.erase(it->first.substr(prefix.size()));
    }
  }
  return {names.begin(), names.end()};
}

Store::Transaction* Store::transaction_of(uint32_t caller, uint64_t id) {
  if (id == 0) return nullptr;
  auto it = transactions_.find(id);
  if (it == transactions_.end() || it->second.caller != caller)
    throw StoreMissingError("no store transaction " + std::to_string(id));
  return &it->second;
}

const StoreNode* Store::readable_node(uint32_t caller, const std::string& absolute, Transaction* transaction) {
  if (transaction) transaction->touched.insert(absolute);
  const StoreNode* node = find(absolute, transaction);
  if (node && !node->permissions.may_read(caller))
    throw StoreDeniedError("domain " + std::to_string(caller) + " may not read " + absolute);
  return node;
}

std::optional<std::string> Store::read(uint32_t caller, const std::string& path, uint64_t transaction) {
  const std::string absolute = canonical(caller, path);
  std::lock_guard lock(mutex_);
  const StoreNode* node = readable_node(caller, absolute, transaction_of(caller, transaction));
  if (!node) return std::nullopt;
  return node->value;
}

std::vector<std::string> Store::children(uint32_t caller, const std::string& path, uint64_t transaction) {
  const std::string absolute = canonical(caller, path);
  std::lock_guard lock(mutex_);
  Transaction* t = transaction_of(caller, transaction);
  if (!readable_node(caller, absolute, t)) throw StoreMissingError("no store node " + absolute);
  return child_names(absolute, t);
}

StorePermissions Store::permissions(uint32_t caller, const std::string& path, uint64_t transaction) {
  const std::string absolute = canonical(caller, path);
  std::lock_guard lock(mutex_);
  const StoreNode* node = readable_node(caller, absolute, transaction_of(caller, transaction));
  if (!node) throw StoreMissingError("no store node " + absolute);
  return node->permissions;
}

void Store::write(uint32_t caller, const std::string& path, const std::string& value, uint64_t transaction) {
  const std::string absolute = canonical(caller, path);
  const size_t limit = caller == kHost ? kHostValueBytes : limits_.value_bytes;
  if (value.size() > limit)
    throw StoreQuotaError("a store value of " + std::to_string(value.size()) + " bytes is over the limit of " +
                          std::to_string(limit) + " bytes");
  std::lock_guard lock(mutex_);
  Transaction* t = transaction_of(caller, transaction);
  std::vector<Change> changes;
  if (const StoreNode* node = find(absolute, t)) {
    if (!node->permissions.may_write(caller))
      throw StoreDeniedError("domain " + std::to_string(caller) + " may not write " + absolute);
    StoreNode changed = *node;
    changed.value = value;
    changes.push_back({absolute, changed});
  } else {
    // The nearest node that exists decides whether new ones may be made below it.
    std::vector<std::string> missing{absolute};
    std::string parent = parent_of(absolute);
    while (!find(parent, t)) {
      missing.push_back(parent);
      parent = parent_of(parent);
    }
    const StoreNode& existing = *find(parent, t);
    if (!existing.permissions.may_write(caller))
      throw StoreDeniedError("domain " + std::to_string(caller) + " may not create nodes under " + parent);
    // As xenstored: a new node takes its parent's permissions, and a guest owns what it makes
    // (the host's new nodes keep the parent's owner, so the host writing a key under a guest's
    // data/ leaves it the guest's).
    StoreNode created;
    created.permissions = existing.permissions;
    if (caller != kHost) created.permissions.entries.front().domain = caller;
    // A parent the transaction made itself cannot be removed by others meanwhile.
    if (t && !t->overlay.count(parent)) t->parents.insert(parent);
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      created.value = *it == absolute ? value : "";
      changes.push_back({*it, created});
    }
  }
  stage(changes, t, caller);
}

void Store::remove(uint32_t caller, const std::string& path, uint64_t transaction) {
  const std::string absolute = canonical(caller, path);
  if (absolute == "/") throw Error("the store's root cannot be removed");
  std::lock_guard lock(mutex_);
  Transaction* t = transaction_of(caller, transaction);
  const StoreNode* node = find(absolute, t);
  if (!node) throw StoreMissingError("no store node " + absolute);
  if (!node->permissions.may_write(caller))
    throw StoreDeniedError("domain " + std::to_string(caller) + " may not remove " + absolute);
  std::vector<Change> changes;
  std::vector<std::string> pending{absolute};
  while (!pending.empty()) {
    const std::string current = pending.back();
    pending.pop_back();
    changes.push_back({current, std::nullopt});
    for (const std::string& child : child_names(current, t)) pending.push_back(prefix_of_children(current) + child);
  }
  stage(changes, t, caller);
}

void Store::set_permissions(uint32_t caller, const std::string& path, const StorePermissions& permissions,
                            uint64_t transaction) {
  const std::string absolute = canonical(caller, path);
  std::lock_guard lock(mutex_);
  Transaction* t = transaction_of(caller, transaction);
  const StoreNode* node = find(absolute, t);
  if (!node) throw StoreMissingError("no store node " + absolute);
  if (caller != kHost && caller != node->permissions.owner())
    throw StoreDeniedError("domain " + std::to_string(caller) + " does not own " + absolute);
  if (caller != kHost && permissions.owner() != caller)
    throw StoreDeniedError("domain " + std::to_string(caller) + " may not give " + absolute + " to another domain");
  StoreNode changed = *node;
  changed.permissions = permissions;
  std::vector<Change> changes{{absolute, changed}};
  stage(changes, t, caller);
}

void Store::stage(std::vector<Change>& changes, Transaction* transaction, uint32_t caller) {
  if (!transaction) {
    apply(std::move(changes), caller);
    return;
  }
  for (Change& change : changes) {
    transaction->touched.insert(change.path);
    transaction->overlay[change.path] = std::move(change.node);
  }
}

void Store::apply(std::vector<Change> changes, uint32_t caller) {
  std::map<uint32_t, int64_t> delta;
  for (const Change& change : changes) {
    if (auto it = nodes_.find(change.path); it != nodes_.end()) --delta[it->second.permissions.owner()];
    if (change.node) ++delta[change.node->permissions.owner()];
  }
  for (const auto& [owner, added] : delta) {
    if (owner == kHost || added <= 0) continue;
    if (owned_[owner] + static_cast<size_t>(added) > limits_.nodes)
      throw StoreQuotaError("domain " + std::to_string(owner) + " would own more than " +
                            std::to_string(limits_.nodes) + " store nodes" +
                            (caller == owner ? "" : " (asked by domain " + std::to_string(caller) + ")"));
  }
  if (persist_) persist_(changes);
  const uint64_t generation = ++generation_;
  for (Change& change : changes) {
    if (change.node) {
      change.node->generation = generation;
      const bool created = nodes_.insert_or_assign(change.path, *change.node).second;
      if (auto parent = nodes_.find(parent_of(change.path)); created && parent != nodes_.end())
        parent->second.generation = generation;
    } else if (nodes_.erase(change.path)) {
      removed_at_[change.path] = generation;
      if (auto parent = nodes_.find(parent_of(change.path)); parent != nodes_.end()) parent->second.generation = generation;
    }
  }
  for (const auto& [owner, added] : delta) owned_[owner] = static_cast<size_t>(static_cast<int64_t>(owned_[owner]) + added);
  if (transactions_.empty()) removed_at_.clear();  // only open transactions look at it
  // A removed subtree is told once, by its top.
  std::set<std::string> removed;
  for (const Change& change : changes) {
    if (change.node) {
      changes_.publish("written", {{"path", change.path}});
      continue;
    }
    const std::string parent = parent_of(change.path);
    bool under_removed = false;
    for (std::string up = parent; !under_removed; up = parent_of(up)) {
      under_removed = removed.count(up) != 0;
      if (up == "/") break;
    }
    removed.insert(change.path);
    if (!under_removed) changes_.publish("removed", {{"path", change.path}});
  }
}

uint64_t Store::begin(uint32_t caller) {
  std::lock_guard lock(mutex_);
  const size_t open = static_cast<size_t>(
      std::count_if(transactions_.begin(), transactions_.end(), [&](const auto& entry) { return entry.second.caller == caller; }));
  const size_t limit = caller == kHost ? kHostTransactions : limits_.transactions;
  if (open >= limit)
    throw StoreQuotaError("domain " + std::to_string(caller) + " has " + std::to_string(open) +
                          " store transactions open, the most it may");
  const uint64_t id = next_transaction_++;
  Transaction transaction;
  transaction.caller = caller;
  transaction.started = generation_;
  transactions_[id] = std::move(transaction);
  return id;
}

void Store::commit(uint32_t caller, uint64_t transaction) {
  std::lock_guard lock(mutex_);
  Transaction* t = transaction_of(caller, transaction);
  if (!t) throw StoreMissingError("no store transaction 0");
  Transaction taken = std::move(*t);
  transactions_.erase(transaction);
  for (const std::string& path : taken.touched) {
    auto node = nodes_.find(path);
    auto removed = removed_at_.find(path);
    if ((node != nodes_.end() && node->second.generation > taken.started) ||
        (removed != removed_at_.end() && removed->second > taken.started))
      throw StoreConflictError("store transaction " + std::to_string(transaction) + " conflicts: " + path +
                               " changed since it began; start it again");
  }
  for (const std::string& path : taken.parents)
    if (!nodes_.count(path))
      throw StoreConflictError("store transaction " + std::to_string(transaction) + " conflicts: " + path +
                               " was removed since it began; start it again");
  std::vector<Change> changes;
  for (auto& [path, node] : taken.overlay) changes.push_back({path, std::move(node)});
  if (!changes.empty()) apply(std::move(changes), caller);
  if (transactions_.empty()) removed_at_.clear();
}

void Store::abort(uint32_t caller, uint64_t transaction) {
  std::lock_guard lock(mutex_);
  if (!transaction_of(caller, transaction)) throw StoreMissingError("no store transaction 0");
  transactions_.erase(transaction);
  if (transactions_.empty()) removed_at_.clear();
}

std::shared_ptr<EventBus::Subscription> Store::watch(uint32_t caller, const std::string& path) {
  const std::string absolute = canonical(caller, path);
  if (caller != kHost && !is_within(absolute, domain_home(caller)))
    throw StoreDeniedError("domain " + std::to_string(caller) + " may watch only inside " + domain_home(caller));
  {
    std::lock_guard lock(mutex_);
    if (caller != kHost && watches_[caller] >= limits_.watches)
      throw StoreQuotaError("domain " + std::to_string(caller) + " has " + std::to_string(limits_.watches) +
                            " store watches, the most it may");
    ++watches_[caller];
  }
  return changes_.subscribe([absolute](const json& event) {
    const std::string changed = event.value("path", "");
    return is_within(changed, absolute) || (event.value("event", "") == "removed" && is_within(absolute, changed));
  });
}

void Store::unwatch(uint32_t caller, const std::shared_ptr<EventBus::Subscription>& subscription) {
  changes_.unsubscribe(subscription);
  std::lock_guard lock(mutex_);
  if (watches_[caller] > 0) --watches_[caller];
}

size_t Store::nodes_owned(uint32_t domain) {
  std::lock_guard lock(mutex_);
  return owned_[domain];
}

}  // namespace kdom::toolstack
