// Store: kdomd's hierarchical key-value store, as Xen's xenstore. Paths like
// /local/domain/<id>/name hold short string values; each node has permissions (its owner, the
// access of every other domain, and exceptions for named domains), every domain but the host
// has quotas (nodes it owns, value size, watches, open transactions), transactions see the
// store as it was plus their own changes and fail with a conflict when what they touched
// changed meanwhile, and every change is published for watches. It is kept in memory and
// handed to a persistence hook (the registry's SQLite file: store_persistence.h) on each
// change, so it survives a daemon restart. Domain 0 is the host: kdomd itself and the host's
// tools.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "toolstack/event_bus.h"

namespace kdom::toolstack {

// Access refused by a node's permissions: the API's 403.
class StoreDeniedError : public Error {
 public:
  using Error::Error;
};
// Over a domain's quota: the API's 413.
class StoreQuotaError : public Error {
 public:
  using Error::Error;
};
// No such node, or no such transaction: the API's 404.
class StoreMissingError : public Error {
 public:
  using Error::Error;
};
// A transaction whose nodes changed under it: the API's 409; the caller starts again.
class StoreConflictError : public Error {
 public:
  using Error::Error;
};

// A node's permissions, as xenstore writes them: "n0 r5" is owned by domain 0, others have no
// access ('n'), domain 5 may read ('r'); 'w' write, 'b' both. The first entry names the owner
// (who may always read, write and change the permissions) and everyone else's access.
struct StorePermissions {
  struct Entry {
    uint32_t domain = 0;
    char access = 'n';
  };
  std::vector<Entry> entries{{0, 'n'}};

  uint32_t owner() const { return entries.front().domain; }
  // 'n', 'r', 'w' or 'b' for `domain` (the host and the owner: 'b').
  char access_of(uint32_t domain) const;
  bool may_read(uint32_t domain) const;
  bool may_write(uint32_t domain) const;
  std::string text() const;
  // Throws Error naming what is wrong with `text`.
  static StorePermissions parse(const std::string& text);
};

struct StoreNode {
  std::string value;
  StorePermissions permissions;
  uint64_t generation = 0;  // the store's generation when it last changed (or a child came or went)
};

struct StoreLimits {  // for every domain but the host (xenstored's defaults)
  size_t value_bytes = 2048;
  size_t nodes = 1000;
  size_t watches = 128;
  size_t transactions = 10;
};

class Store {
 public:
  static constexpr uint32_t kHost = 0;
  static constexpr size_t kMaxPathBytes = 1024;
  using Limits = StoreLimits;
  // The host's own bounds: an API client is untrusted too.
  static constexpr size_t kHostValueBytes = 64 * 1024;
  static constexpr size_t kHostTransactions = 256;
  // A change handed to the persistence hook: the node at `path` is now `node`, or gone.
  struct Change {
    std::string path;
    std::optional<StoreNode> node;
  };
  using Persist = std::function<void(const std::vector<Change>& changes)>;

  // `nodes`: what was persisted (empty: a new store, with only "/"). `persist` is called with
  // every change, under the store's lock, before the change is visible; when it throws, the
  // change is not made.
  explicit Store(std::map<std::string, StoreNode> nodes = {}, Persist persist = {}, Limits limits = {});

  // `caller` is the domain asking; `transaction` 0 is none. Relative paths are under the
  // caller's /local/domain/<id>.
  std::optional<std::string> read(uint32_t caller, const std::string& path, uint64_t transaction = 0);
  std::vector<std::string> children(uint32_t caller, const std::string& path, uint64_t transaction = 0);
  // Creates missing parents; a new node takes its parent's permissions, and is owned by the
  // caller when that is a guest (the host's keep the parent's owner).
  void write(uint32_t caller, const std::string& path, const std::string& value, uint64_t transaction = 0);
  // The node and everything under it; "/" cannot be removed.
  void remove(uint32_t caller, const std::string& path, uint64_t transaction = 0);
  StorePermissions permissions(uint32_t caller, const std::string& path, uint64_t transaction = 0);
  void set_permissions(uint32_t caller, const std::string& path, const StorePermissions& permissions,
                       uint64_t transaction = 0);

  uint64_t begin(uint32_t caller);
  // Makes the transaction's changes, all or none; StoreConflictError when a node it read or
  // changed was changed by someone else since it began (then nothing is made).
  void commit(uint32_t caller, uint64_t transaction);
  void abort(uint32_t caller, uint64_t transaction);

  // The absolute form of `path` for `caller`; throws Error when it is not a valid path.
  static std::string canonical(uint32_t caller, const std::string& path);

  // A reader of the changes a watch on `path` by `caller` sees: changes at or under the path,
  // and the removal of the path or a parent (events "written" and "removed", with "path"). A
  // domain other than the host may watch only inside its own /local/domain/<id>. Counts
  // against the caller's watch quota until unwatch().
  std::shared_ptr<EventBus::Subscription> watch(uint32_t caller, const std::string& path);
  void unwatch(uint32_t caller, const std::shared_ptr<EventBus::Subscription>& subscription);
  // Ends every watch (the daemon stops).
  void close_watches() { changes_.close(); }

  // Nodes owned by `domain` (what its quota counts).
  size_t nodes_owned(uint32_t domain);

 private:
  struct Transaction {
    uint32_t caller = 0;
    uint64_t started = 0;                                // the store's generation then
    std::map<std::string, std::optional<StoreNode>> overlay;  // its changes (nullopt: removed)
    std::set<std::string> touched;  // paths it read or changed: any change to them conflicts
    std::set<std::string> parents;  // nodes it made children under: their removal conflicts
  };
  // A view: the store itself, or the store as one transaction sees it.
  const StoreNode* find(const std::string& path, const Transaction* transaction) const;
  std::vector<std::string> child_names(const std::string& path, const Transaction* transaction) const;
  Transaction* transaction_of(uint32_t caller, uint64_t id);
  // The node at `absolute` as `transaction` sees it (null when there is none), which the caller
  // must be allowed to read (StoreDeniedError); the transaction has touched it.
  const StoreNode* readable_node(uint32_t caller, const std::string& absolute, Transaction* transaction);
  // Applies `changes` (checked for quotas first), persists them, bumps generations, publishes.
  void apply(std::vector<Change> changes, uint32_t caller);
  void stage(std::vector<Change>& changes, Transaction* transaction, uint32_t caller);

  const Persist persist_;
  const Limits limits_;
  std::mutex mutex_;
  std::map<std::string, StoreNode> nodes_;
  std::map<std::string, uint64_t> removed_at_;  // for transactions' conflict checks
  std::map<uint32_t, size_t> owned_;            // nodes per owner
  std::map<uint32_t, size_t> watches_;          // watches per domain
  uint64_t generation_ = 1;
  uint64_t next_transaction_ = 1;
  std::map<uint64_t, Transaction> transactions_;
  EventBus changes_;
};

}  // namespace kdom::toolstack
