// Tests of the store (xenstore's role): paths, permissions as xenstore's, quotas per domain,
// transactions (their own view, all-or-nothing commits, conflicts), watches (a change under
// the watched path, a watch on a parent, the removal of the path or a parent, a guest kept to
// its own subtree) and persistence through a real registry file.
#include "toolstack/store.h"
#include "toolstack/store_persistence.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace kdom::toolstack {
namespace {

using nlohmann::json;
using Next = EventBus::Subscription::Next;
constexpr uint32_t kHost = Store::kHost;
constexpr std::chrono::milliseconds kNoWait{0};

// A store with /local/domain/5 readable by domain 5 and /local/domain/5/data its own, as kdomd
// makes for each domain.
std::unique_ptr<Store> make_guest_store(StoreLimits limits = {}) {
  auto owned = std::make_unique<Store>(std::map<std::string, StoreNode>{}, Store::Persist{}, limits);
  Store& store = *owned;
  store.write(kHost, "/local/domain/5/name", "web");
  store.set_permissions(kHost, "/local/domain/5", StorePermissions::parse("n0 r5"));
  store.set_permissions(kHost, "/local/domain/5/name", StorePermissions::parse("n0 r5"));
  store.write(kHost, "/local/domain/5/data", "");
  store.set_permissions(kHost, "/local/domain/5/data", StorePermissions::parse("n5"));
  store.write(kHost, "/local/domain/6/secret", "s3");
  return owned;
}

std::vector<std::string> drain(EventBus::Subscription& watch) {
  std::vector<std::string> seen;
  for (json event; watch.next(event, kNoWait) == Next::kEvent;)
    seen.push_back(event["event"].get<std::string>() + " " + event["path"].get<std::string>());
  return seen;
}

TEST(Store, WriteReadListRemove) {
  Store store;
  store.write(kHost, "/vm/1234/name", "web");
  EXPECT_EQ(store.read(kHost, "/vm/1234/name"), "web");
  EXPECT_EQ(store.read(kHost, "/vm/1234"), "") << "parents are made, empty";
  EXPECT_EQ(store.read(kHost, "/vm/9"), std::nullopt);
  store.write(kHost, "/vm/1234/uuid", "1234");
  EXPECT_EQ(store.children(kHost, "/vm/1234"), (std::vector<std::string>{"name", "uuid"}));
  EXPECT_EQ(store.children(kHost, "/"), (std::vector<std::string>{"vm"}));
  store.remove(kHost, "/vm/1234");
  EXPECT_EQ(store.read(kHost, "/vm/1234/name"), std::nullopt);
  EXPECT_TRUE(store.children(kHost, "/vm").empty());
  EXPECT_THROW(store.remove(kHost, "/vm/1234"), StoreMissingError);
  EXPECT_THROW(store.remove(kHost, "/"), Error);
  EXPECT_THROW(store.children(kHost, "/nope"), StoreMissingError);
}

TEST(Store, PathsAreCheckedAndRelativeOnesAreUnderTheCallersHome) {
  auto owned = make_guest_store();
  Store& store = *owned;
  EXPECT_EQ(Store::canonical(5, "data/x"), "/local/domain/5/data/x");
  EXPECT_EQ(Store::canonical(kHost, "/a/b"), "/a/b");
  for (const std::string& bad : std::vector<std::string>{"", "/a//b", "/a/", "/a b", "/a\nb", "/ä",
                                                         std::string("/a\0b", 4), "/" + std::string(Store::kMaxPathBytes, 'x')})
    EXPECT_THROW(Store::canonical(kHost, bad), Error) << bad;
  store.write(5, "data/x", "1");
  EXPECT_EQ(store.read(kHost, "/local/domain/5/data/x"), "1");
}

TEST(Store, PermissionsAreXenstores) {
  const StorePermissions permissions = StorePermissions::parse("n0 r5 w7 b9");
  EXPECT_EQ(permissions.text(), "n0 r5 w7 b9");
  EXPECT_EQ(permissions.owner(), 0u);
  EXPECT_TRUE(permissions.may_read(5));
  EXPECT_FALSE(permissions.may_write(5));
  EXPECT_TRUE(permissions.may_write(7));
  EXPECT_FALSE(permissions.may_read(7));
  EXPECT_TRUE(permissions.may_read(9) && permissions.may_write(9));
  EXPECT_FALSE(permissions.may_read(3));
  for (const char* bad : {"", "x0", "r", "r-1", "r99999999999", "rr5"})
    EXPECT_THROW(StorePermissions::parse(bad), Error) << bad;

  auto owned = make_guest_store();
  Store& store = *owned;
  EXPECT_EQ(store.read(5, "/local/domain/5/name"), "web");
  EXPECT_THROW(store.write(5, "/local/domain/5/name", "evil"), StoreDeniedError);
  EXPECT_THROW(store.read(5, "/local/domain/6/secret"), StoreDeniedError) << "another domain's keys";
  EXPECT_THROW(store.children(5, "/local/domain/6"), StoreDeniedError);
  EXPECT_THROW(store.write(5, "/local/domain/6/x", "1"), StoreDeniedError);
  EXPECT_THROW(store.remove(5, "/local/domain/5/name"), StoreDeniedError);
  EXPECT_THROW(store.write(5, "/vm/x", "1"), StoreDeniedError);
  store.write(5, "data/mine/deep", "1");  // under its own node: made, owned by it
  EXPECT_EQ(store.permissions(kHost, "/local/domain/5/data/mine/deep").owner(), 5u);
  store.write(kHost, "/local/domain/5/data/from-host", "go");  // the host's key in the guest's data/
  EXPECT_EQ(store.permissions(kHost, "/local/domain/5/data/from-host").owner(), 5u);
  EXPECT_EQ(store.read(5, "data/from-host"), "go");
  EXPECT_THROW(store.set_permissions(5, "data/mine", StorePermissions::parse("n6")), StoreDeniedError)
      << "a guest cannot give its nodes away (nor its quota)";
  store.set_permissions(5, "data/mine", StorePermissions::parse("n5 r6"));
  EXPECT_EQ(store.read(6, "/local/domain/5/data/mine"), "");
  EXPECT_THROW(store.set_permissions(5, "/local/domain/5/name", StorePermissions::parse("b5")), StoreDeniedError);
  EXPECT_EQ(store.read(kHost, "/local/domain/5/name"), "web");
}

TEST(Store, QuotasBoundWhatAGuestMayStore) {
  StoreLimits limits;
  limits.nodes = 5;
  limits.value_bytes = 16;
  limits.watches = 2;
  limits.transactions = 1;
  auto owned = make_guest_store(limits);
  Store& store = *owned;
  EXPECT_EQ(store.nodes_owned(5), 1u) << "its data node";
  EXPECT_THROW(store.write(5, "data/big", std::string(17, 'x')), StoreQuotaError);
  store.write(5, "data/ok", std::string(16, 'x'));
  store.write(5, "data/a", "1");
  store.write(5, "data/b", "1");
  store.write(5, "data/c", "1");
  EXPECT_EQ(store.nodes_owned(5), 5u);
  EXPECT_THROW(store.write(5, "data/d", "1"), StoreQuotaError);
  EXPECT_THROW(store.write(5, "data/e/f", "1"), StoreQuotaError);
  EXPECT_EQ(store.read(kHost, "/local/domain/5/data/e"), std::nullopt) << "a refused write makes nothing";
  store.write(5, "data/a", "rewritten");  // no new node: within the quota
  store.remove(5, "data/c");
  store.write(5, "data/d", "1");
  EXPECT_NO_THROW(store.write(kHost, "/host/" + std::string(100, 'x'), std::string(4096, 'v'))) << "the host has no node quota";
  EXPECT_THROW(store.write(kHost, "/host/huge", std::string(Store::kHostValueBytes + 1, 'v')), StoreQuotaError);

  auto one = store.watch(5, "data"), two = store.watch(5, "name");
  EXPECT_THROW(store.watch(5, "data/a"), StoreQuotaError);
  store.unwatch(5, one);
  EXPECT_NO_THROW(store.unwatch(5, store.watch(5, "data/a")));
  EXPECT_THROW(store.watch(5, "/local/domain/6"), StoreDeniedError) << "a guest watches only its own subtree";
  const uint64_t transaction = store.begin(5);
  EXPECT_THROW(store.begin(5), StoreQuotaError);
  store.abort(5, transaction);
  EXPECT_NO_THROW(store.abort(5, store.begin(5)));
}

TEST(Store, ATransactionSeesItsOwnChangesAndCommitsAllOrNothing) {
  Store store;
  store.write(kHost, "/a/x", "1");
  store.write(kHost, "/a/y", "2");
  const uint64_t t = store.begin(kHost);
  store.write(kHost, "/a/x", "10", t);
  store.write(kHost, "/a/z/deep", "3", t);
  store.remove(kHost, "/a/y", t);
  EXPECT_EQ(store.read(kHost, "/a/x", t), "10");
  EXPECT_EQ(store.read(kHost, "/a/y", t), std::nullopt);
  EXPECT_EQ(store.children(kHost, "/a", t), (std::vector<std::string>{"x", "z"}));
  // Outside it, nothing yet.
  EXPECT_EQ(store.read(kHost, "/a/x"), "1");
  EXPECT_EQ(store.read(kHost, "/a/y"), "2");
  EXPECT_EQ(store.read(kHost, "/a/z"), std::nullopt);
  EXPECT_THROW(store.read(5, "/a/x", t), StoreMissingError) << "another caller cannot use it";
  store.commit(kHost, t);
  EXPECT_EQ(store.read(kHost, "/a/x"), "10");
  EXPECT_EQ(store.read(kHost, "/a/y"), std::nullopt);
  EXPECT_EQ(store.read(kHost, "/a/z/deep"), "3");
  EXPECT_THROW(store.commit(kHost, t), StoreMissingError) << "a transaction ends with its commit";
  // Nodes made under a node the same transaction made.
  const uint64_t nested = store.begin(kHost);
  store.write(kHost, "/b", "", nested);
  store.set_permissions(kHost, "/b", StorePermissions::parse("n0 r5"), nested);
  store.write(kHost, "/b/c", "1", nested);
  store.commit(kHost, nested);
  EXPECT_EQ(store.read(kHost, "/b/c"), "1");
  EXPECT_EQ(store.permissions(kHost, "/b/c").text(), "n0 r5");
}

TEST(Store, AConflictingTransactionChangesNothing) {
  Store store;
  store.write(kHost, "/counter", "1");
  store.write(kHost, "/other", "x");
  // Read-modify-write by two transactions: the second to commit conflicts.
  const uint64_t first = store.begin(kHost), second = store.begin(kHost);
  const int value = std::stoi(*store.read(kHost, "/counter", first));
  store.write(kHost, "/counter", std::to_string(value + 1), first);
  store.read(kHost, "/counter", second);
  store.write(kHost, "/counter", "100", second);
  store.write(kHost, "/side-effect", "1", second);
  store.commit(kHost, first);
  EXPECT_THROW(store.commit(kHost, second), StoreConflictError);
  EXPECT_EQ(store.read(kHost, "/counter"), "2");
  EXPECT_EQ(store.read(kHost, "/side-effect"), std::nullopt);
  // A node removed, and a child added under a listed node, are conflicts too; an unrelated
  // change is not.
  const uint64_t lists = store.begin(kHost), reads = store.begin(kHost), unrelated = store.begin(kHost);
  store.children(kHost, "/", lists);
  store.write(kHost, "/x", "1", lists);
  store.read(kHost, "/other", reads);
  store.write(kHost, "/y", "1", reads);
  store.read(kHost, "/counter", unrelated);
  store.write(kHost, "/z", "1", unrelated);
  store.write(kHost, "/new-top", "1");
  store.remove(kHost, "/other");
  EXPECT_THROW(store.commit(kHost, lists), StoreConflictError);
  EXPECT_THROW(store.commit(kHost, reads), StoreConflictError);
  EXPECT_NO_THROW(store.commit(kHost, unrelated)) << "a sibling made meanwhile is no conflict";
  EXPECT_EQ(store.read(kHost, "/z"), "1");
  // Making a node under one removed meanwhile is.
  store.write(kHost, "/dir/a", "1");
  const uint64_t under = store.begin(kHost);
  store.write(kHost, "/dir/b", "1", under);
  store.remove(kHost, "/dir");
  EXPECT_THROW(store.commit(kHost, under), StoreConflictError);
  EXPECT_EQ(store.read(kHost, "/dir/b"), std::nullopt);
}

TEST(Store, WatchesSeeChangesUnderThePathAndTheRemovalOfAParent) {
  Store store;
  auto on_domain = store.watch(kHost, "/local/domain/5");
  auto on_parent = store.watch(kHost, "/local");
  auto on_leaf = store.watch(kHost, "/local/domain/5/data/key");
  auto elsewhere = store.watch(kHost, "/vm");
  store.write(kHost, "/local/domain/5/data/key", "v");
  store.write(kHost, "/local/domain/6/name", "x");
  EXPECT_EQ(drain(*on_leaf), (std::vector<std::string>{"written /local/domain/5/data/key"}));
  EXPECT_EQ(drain(*on_domain).back(), "written /local/domain/5/data/key");
  const auto parent_seen = drain(*on_parent);
  EXPECT_EQ(parent_seen.back(), "written /local/domain/6/name");
  EXPECT_TRUE(drain(*elsewhere).empty());
  store.remove(kHost, "/local/domain/5");
  EXPECT_EQ(drain(*on_leaf), (std::vector<std::string>{"removed /local/domain/5"})) << "a parent's removal";
  EXPECT_EQ(drain(*on_domain), (std::vector<std::string>{"removed /local/domain/5"})) << "told once, by its top";
  EXPECT_EQ(drain(*on_parent), (std::vector<std::string>{"removed /local/domain/5"}));
  // A transaction's changes are seen when it commits, not before.
  const uint64_t t = store.begin(kHost);
  store.write(kHost, "/vm/1/name", "web", t);
  EXPECT_TRUE(drain(*elsewhere).empty());
  store.commit(kHost, t);
  EXPECT_FALSE(drain(*elsewhere).empty());
}

TEST(Store, ItComesBackFromTheRegistryAfterARestart) {
  char pattern[] = "/tmp/kdom-store-test.XXXXXX";
  const std::string dir = mkdtemp(pattern);
  {
    Registry registry(dir);
    Store store(store_nodes_from(registry), store_persistence_in(registry));
    store.write(kHost, "/local/domain/5/data/key", "value with spaces\nand a line");
    store.set_permissions(kHost, "/local/domain/5/data", StorePermissions::parse("n5 r7"));
    store.write(kHost, "/gone/soon", "x");
    store.remove(kHost, "/gone");
    const uint64_t t = store.begin(kHost);
    store.write(kHost, "/uncommitted", "x", t);
  }
  Registry registry(dir);
  Store store(store_nodes_from(registry), store_persistence_in(registry));
  EXPECT_EQ(store.read(kHost, "/local/domain/5/data/key"), "value with spaces\nand a line");
  EXPECT_EQ(store.permissions(kHost, "/local/domain/5/data").text(), "n5 r7");
  EXPECT_EQ(store.nodes_owned(5), 1u);
  EXPECT_EQ(store.read(kHost, "/gone"), std::nullopt);
  EXPECT_EQ(store.read(kHost, "/uncommitted"), std::nullopt);
  std::filesystem::remove_all(dir);
}

TEST(Store, AFailedPersistChangesNothing) {
  bool fail = false;
  Store store({}, [&](const std::vector<Store::Change>&) {
    if (fail) throw Error("disk full");
  });
  store.write(kHost, "/a", "1");
  fail = true;
  EXPECT_THROW(store.write(kHost, "/a", "2"), Error);
  EXPECT_THROW(store.write(kHost, "/b/c", "2"), Error);
  EXPECT_EQ(store.read(kHost, "/a"), "1");
  EXPECT_EQ(store.read(kHost, "/b"), std::nullopt);
}

}  // namespace
}  // namespace kdom::toolstack
