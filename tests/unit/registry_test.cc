// Tests of kdomd's domain registry: records round-trip (config JSON included), name conflicts
// leave the registry unchanged, ids are never reused (after a failed add, a removal, a reopen),
// updates persist, the file is in WAL mode, foreign/newer/garbage files are refused, a writer
// killed mid-transaction leaves no trace, a full disk is an Error, and threads may share it.
#include "toolstack/registry.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <thread>

namespace kdom::toolstack {
namespace {

using nlohmann::json;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = testing::TempDir() + "kdom-registry-XXXXXX";
    if (!mkdtemp(pattern.data())) throw SystemError("mkdtemp " + pattern, errno);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string db() const { return path_ + "/registry.db"; }

 private:
  std::string path_;
};

DomainRecord make_record(const std::string& name) {
  DomainRecord record;
  record.name = name;
  record.uuid = "uuid-of-" + name;
  record.config = {{"name", name}, {"memory_mib", 512}, {"vcpus", 2}, {"disks", json::array({"/img/" + name})}};
  record.state = "starting";
  return record;
}

// Runs SQL on the file through a separate, raw connection.
void raw_exec(const std::string& file, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  char* message = nullptr;
  const int result = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  const std::string text = message ? message : "";
  sqlite3_free(message);
  sqlite3_close(db);
  ASSERT_EQ(result, SQLITE_OK) << text;
}

std::string raw_query_text(const std::string& file, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  std::string value = "<error>";
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK &&
      sqlite3_step(statement) == SQLITE_ROW)
    value = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return value;
}

std::string file_contents(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The message of the Error that constructing a Registry on directory throws ("" if none).
std::string open_error(const std::string& directory) {
  try {
    Registry registry(directory);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

void expect_same(const DomainRecord& a, const DomainRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.uuid, b.uuid);
  EXPECT_EQ(a.config, b.config);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.start_time, b.start_time);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.pid_start_ticks, b.pid_start_ticks);
  EXPECT_EQ(a.last_exit, b.last_exit);
}

TEST(RegistryTest, CreatesItsDirectoryPrivate) {
  TempDir temp;
  const std::string directory = temp.path() + "/var/lib/kdom";
  Registry registry(directory);
  struct stat info {};
  ASSERT_EQ(stat(directory.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
  EXPECT_TRUE(std::filesystem::exists(directory + "/registry.db"));
  EXPECT_TRUE(registry.all().empty());
}

TEST(RegistryTest, AddFindAndListRoundTrip) {
  TempDir temp;
  Registry registry(temp.path());
  DomainRecord web = make_record("web");
  web.start_time = 1700000000;
  web.pid = 4242;
  web.pid_start_ticks = 0x1'0000'0001ull;
  web.last_exit = "guest powered off";
  web.config["nested"] = {{"unicode", "d\u00e9j\u00e0 vu"}, {"list", {1, 2.5, nullptr, true}}};
  DomainRecord db = make_record("db");

  EXPECT_EQ(registry.add(web), 1u);  // Domain-0 is the host
  EXPECT_EQ(web.id, 1u);
  EXPECT_EQ(registry.add(db), 2u);

  auto found = registry.find(1);
  ASSERT_TRUE(found);
  expect_same(*found, web);
  auto by_name = registry.find_by_name("db");
  ASSERT_TRUE(by_name);
  expect_same(*by_name, db);
  EXPECT_EQ(by_name->pid, 0);
  EXPECT_TRUE(by_name->last_exit.empty());

  EXPECT_FALSE(registry.find(3));
  EXPECT_FALSE(registry.find(0));
  EXPECT_FALSE(registry.find_by_name("nope"));

  auto all = registry.all();
  ASSERT_EQ(all.size(), 2u);
  expect_same(all[0], web);
  expect_same(all[1], db);
}

TEST(RegistryTest, DuplicateNameIsAConflictAndChangesNothing) {
  TempDir temp;
  Registry registry(temp.path());
  DomainRecord first = make_record("other");
  DomainRecord web = make_record("web");
  registry.add(first);
  registry.add(web);
  const auto before = registry.all();

  DomainRecord again = make_record("web");
  again.uuid = "different";
  try {
    registry.add(again);
    FAIL() << "a second 'web' was added";
  } catch (const ConflictError& error) {
    EXPECT_STREQ(error.what(), "a domain named 'web' exists already (id 2)");
  }
  const auto after = registry.all();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) expect_same(after[i], before[i]);
}

TEST(RegistryTest, IdsAreNeverReused) {
  TempDir temp;
  std::set<uint32_t> handed_out;
  {
    Registry registry(temp.path());
    DomainRecord a = make_record("a");
    handed_out.insert(registry.add(a));  // 1
    DomainRecord dup = make_record("a");
    EXPECT_THROW(registry.add(dup), ConflictError);  // uses up 2
    DomainRecord b = make_record("b");
    EXPECT_EQ(registry.add(b), 3u);
    handed_out.insert(b.id);
    registry.remove(b.id);
    EXPECT_FALSE(registry.find(b.id));
    DomainRecord c = make_record("c");
    EXPECT_EQ(registry.add(c), 4u);  // not 3, the removed one's
    handed_out.insert(c.id);
    registry.remove(c.id);  // the highest id gone too
  }
  {
    Registry reopened(temp.path());
    DomainRecord d = make_record("d");
    EXPECT_EQ(reopened.add(d), 5u);
    EXPECT_FALSE(handed_out.count(d.id));
    DomainRecord dup = make_record("d");
    EXPECT_THROW(reopened.add(dup), ConflictError);  // uses up 6, committed before the throw
  }
  Registry reopened(temp.path());
  DomainRecord e = make_record("e");
  EXPECT_EQ(reopened.add(e), 7u);
}

TEST(RegistryTest, Rename) {
  TempDir temp;
  Registry registry(temp.path());
  DomainRecord web = make_record("web");
  DomainRecord db = make_record("db");
  registry.add(web);
  registry.add(db);

  try {
    registry.rename(db.id, "web");
    FAIL() << "renamed onto a taken name";
  } catch (const ConflictError& error) {
    EXPECT_STREQ(error.what(), "a domain named 'web' exists already (id 1)");
  }
  EXPECT_EQ(registry.find(db.id)->name, "db");

  registry.rename(web.id, "web");  // its own name: nothing to do
  registry.rename(db.id, "database");
  EXPECT_FALSE(registry.find_by_name("db"));
  ASSERT_TRUE(registry.find_by_name("database"));
  EXPECT_EQ(registry.find_by_name("database")->id, db.id);
  DomainRecord reuse = make_record("db");  // the old name is free again
  EXPECT_EQ(registry.add(reuse), 3u);
}

TEST(RegistryTest, UnknownIdsAreErrors) {
  TempDir temp;
  Registry registry(temp.path());
  DomainRecord web = make_record("web");
  registry.add(web);
  const std::vector<std::function<void()>> calls = {
      [&] { registry.remove(9); },
      [&] { registry.rename(9, "x"); },
      [&] { registry.set_state(9, "running"); },
      [&] { registry.set_process(9, 1, 2, 3); },
      [&] { registry.set_last_exit(9, "crashed"); },
      [&] { registry.set_config(9, json::object()); },
  };
  for (size_t i = 0; i < calls.size(); ++i) {
    try {
      calls[i]();
      ADD_FAILURE() << "call " << i << " did not throw";
    } catch (const ConflictError&) {
      ADD_FAILURE() << "call " << i << " threw ConflictError";
    } catch (const Error& error) {
      EXPECT_STREQ(error.what(), "no domain with id 9") << "call " << i;
    }
  }
  expect_same(*registry.find(web.id), web);
}

TEST(RegistryTest, UpdatesPersistAcrossReopen) {
  TempDir temp;
  DomainRecord web = make_record("web");
  {
    Registry registry(temp.path());
    registry.add(web);
    registry.set_state(web.id, "running");
    registry.set_process(web.id, 31337, 987654321ull, 1712345678);
    registry.set_last_exit(web.id, "VMM killed by signal 9");
    registry.set_config(web.id, json{{"memory_mib", 1024}});
  }
  {
    Registry registry(temp.path());
    auto found = registry.find(web.id);
    ASSERT_TRUE(found);
    EXPECT_EQ(found->state, "running");
    EXPECT_EQ(found->pid, 31337);
    EXPECT_EQ(found->pid_start_ticks, 987654321ull);
    EXPECT_EQ(found->start_time, 1712345678);
    EXPECT_EQ(found->last_exit, "VMM killed by signal 9");
    EXPECT_EQ(found->config, (json{{"memory_mib", 1024}}));
    // Clearing the process and the exit reason reads back as "none".
    registry.set_process(web.id, 0, 0, 0);
    registry.set_last_exit(web.id, "");
  }
  Registry registry(temp.path());
  auto found = registry.find(web.id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->pid, 0);
  EXPECT_EQ(found->pid_start_ticks, 0u);
  EXPECT_EQ(found->start_time, 0);
  EXPECT_TRUE(found->last_exit.empty());
}

TEST(RegistryTest, UsesWriteAheadLogAndMarksTheFile) {
  TempDir temp;
  Registry registry(temp.path());
  DomainRecord web = make_record("web");
  registry.add(web);
  EXPECT_EQ(raw_query_text(temp.db(), "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw_query_text(temp.db(), "PRAGMA user_version"), std::to_string(Registry::kSchemaVersion));
  EXPECT_EQ(raw_query_text(temp.db(), "PRAGMA application_id"), std::to_string(0x6b646f6d));
  // Another connection sees the committed row while ours is open.
  EXPECT_EQ(raw_query_text(temp.db(), "SELECT name FROM domains WHERE id = 1"), "web");
}

TEST(RegistryTest, RefusesANewerSchema) {
  TempDir temp;
  { Registry registry(temp.path()); }
  raw_exec(temp.db(), "PRAGMA user_version = 7");
  const std::string message = open_error(temp.path());
  EXPECT_EQ(message, "registry " + temp.db() + " has schema version 7; this kdomd knows up to " +
                         std::to_string(Registry::kSchemaVersion));
}

// A registry written by the kdomd of schema 1 (its tables as that kdomd made them) is upgraded
// when opened: every domain kept, mem-set's target moved out of the config into its column,
// the id counter where it was.
TEST(RegistryTest, UpgradesASchemaOneRegistry) {
  TempDir temp;
  raw_exec(temp.db(), R"(
    CREATE TABLE domains (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, uuid TEXT NOT NULL,
      config TEXT NOT NULL, state TEXT NOT NULL, start_time INTEGER, pid INTEGER,
      pid_start_ticks INTEGER, last_exit TEXT);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value);
    INSERT INTO meta (key, value) VALUES ('next_domain_id', 8);
    INSERT INTO domains VALUES (3, 'small', '00000000-0000-4000-8000-000000000003',
      '{"name":"small","memory_mib":256,"target_mib":128}', 'running', 1700000000, 4242, 99, NULL);
    INSERT INTO domains VALUES (5, 'whole', '00000000-0000-4000-8000-000000000005',
      '{"name":"whole","memory_mib":64}', 'crashed', NULL, NULL, NULL, 'killed by SIGKILL');
    PRAGMA application_id = 1801744237;
    PRAGMA user_version = 1;
  )");
  {
    Registry registry(temp.path());
    auto small = registry.find_by_name("small");
    ASSERT_TRUE(small);
    EXPECT_EQ(small->id, 3u);
    EXPECT_EQ(small->target_mib, 128u);
    EXPECT_EQ(small->config, nlohmann::json({{"name", "small"}, {"memory_mib", 256}}));
    EXPECT_EQ(small->pid, 4242);
    EXPECT_EQ(small->state, "running");
    auto whole = registry.find(5);
    ASSERT_TRUE(whole);
    EXPECT_EQ(whole->target_mib, 0u);
    EXPECT_EQ(whole->last_exit, "killed by SIGKILL");
    DomainRecord next = make_record("next");
    EXPECT_EQ(registry.add(next), 8u);
    registry.set_target_mib(8, 32);
  }
  EXPECT_EQ(raw_query_text(temp.db(), "PRAGMA user_version"), std::to_string(Registry::kSchemaVersion));
  Registry reopened(temp.path());
  EXPECT_EQ(reopened.find(8)->target_mib, 32u);
  EXPECT_EQ(reopened.all().size(), 3u);
}

TEST(RegistryTest, RefusesAnotherApplicationsSqliteFile) {
  TempDir temp;
  raw_exec(temp.db(), "CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT); INSERT INTO photos VALUES (1, 'x');");
  EXPECT_EQ(open_error(temp.path()), "registry " + temp.db() + " is not a kdom registry");
  // Refused untouched: not switched to WAL, no tables added.
  EXPECT_EQ(raw_query_text(temp.db(), "PRAGMA journal_mode"), "delete");
  EXPECT_EQ(raw_query_text(temp.db(), "SELECT count(*) FROM sqlite_schema"), "1");

  TempDir other;
  raw_exec(other.db(), "PRAGMA application_id = 1234");  // no tables, but someone else's id
  EXPECT_EQ(open_error(other.path()), "registry " + other.db() + " is not a kdom registry");
}

TEST(RegistryTest, RefusesAFileThatIsNotSqlite) {
  TempDir temp;
  std::string garbage;
  for (int i = 0; i < 200; ++i) garbage += "this is not a database, it is a text file\n";
  std::ofstream(temp.db(), std::ios::binary) << garbage;
  const std::string message = open_error(temp.path());
  EXPECT_NE(message.find("registry " + temp.db() + " is not an SQLite database"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_EQ(file_contents(temp.db()), garbage);
}

TEST(RegistryTest, AWriterKilledMidTransactionLeavesNoTrace) {
  TempDir temp;
  DomainRecord web = make_record("web");
  { Registry registry(temp.path()); registry.add(web); }

  // The child writes rows and bumps the counter inside a transaction, with a tiny page cache so
  // the uncommitted pages spill into the WAL file, then dies without committing.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    sqlite3* db = nullptr;
    if (sqlite3_open(temp.db().c_str(), &db) != SQLITE_OK) _exit(1);
    const std::string big(200000, 'x');
    const std::string sql = "PRAGMA cache_size = 2; BEGIN IMMEDIATE;"
                            "UPDATE meta SET value = value + 10 WHERE key = 'next_domain_id';"
                            "INSERT INTO domains (id, name, uuid, config, state) VALUES (2, 'half', 'u', '\"" +
                            big + "\"', 'starting');"
                            "INSERT INTO domains (id, name, uuid, config, state) VALUES (3, 'half2', 'u', '\"" +
                            big + "\"', 'starting');";
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) _exit(2);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "the child failed before its 'crash'";
  EXPECT_GT(std::filesystem::file_size(temp.db() + "-wal"), 0u) << "nothing uncommitted reached the WAL";

  Registry registry(temp.path());
  EXPECT_FALSE(registry.find_by_name("half"));
  EXPECT_FALSE(registry.find_by_name("half2"));
  auto all = registry.all();
  ASSERT_EQ(all.size(), 1u);
  expect_same(all[0], web);
  DomainRecord next = make_record("next");
  EXPECT_EQ(registry.add(next), 2u);  // the uncommitted counter bump never happened
  EXPECT_EQ(registry.find_by_name("next")->id, 2u);
}

// No clean way to fill a real disk in a unit test: a file-size limit (RLIMIT_FSIZE, set in a
// child process only) makes SQLite's writes fail the same way, on the WAL file.
TEST(RegistryTest, AFailedWriteIsAnErrorAndLosesNothing) {
  TempDir temp;
  DomainRecord web = make_record("web");
  { Registry registry(temp.path()); registry.add(web); }

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    signal(SIGXFSZ, SIG_IGN);
    try {
      Registry registry(temp.path());
      const rlimit limit{256 * 1024, 256 * 1024};
      if (setrlimit(RLIMIT_FSIZE, &limit) < 0) _exit(3);
      DomainRecord huge = make_record("huge");
      huge.config["blob"] = std::string(8 * 1024 * 1024, 'z');
      registry.add(huge);
    } catch (const ConflictError&) {
      _exit(4);
    } catch (const Error& error) {
      const std::string message = error.what();
      fprintf(stderr, "child got: %s\n", message.c_str());
      _exit(message.rfind("registry " + temp.db() + ": ", 0) == 0 && message.find('\n') == std::string::npos ? 0 : 5);
    } catch (...) {
      _exit(6);
    }
    _exit(1);  // the write went through: the limit did not bite
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);

  Registry registry(temp.path());
  EXPECT_FALSE(registry.find_by_name("huge"));
  ASSERT_EQ(registry.all().size(), 1u);
  expect_same(registry.all()[0], web);
  DomainRecord next = make_record("next");
  EXPECT_GE(registry.add(next), 2u);
}

TEST(RegistryTest, ThreadsShareOneRegistry) {
  TempDir temp;
  Registry registry(temp.path());
  constexpr int kThreads = 6;
  constexpr int kEach = 15;
  std::vector<std::thread> threads;
  std::vector<std::vector<uint32_t>> ids(kThreads);
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        DomainRecord record = make_record("t" + std::to_string(t) + "-" + std::to_string(i));
        ids[t].push_back(registry.add(record));
        registry.set_state(record.id, "running");
        (void)registry.all();
      }
    });
  for (auto& thread : threads) thread.join();
  std::set<uint32_t> unique;
  for (const auto& list : ids) unique.insert(list.begin(), list.end());
  EXPECT_EQ(unique.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(*unique.begin(), 1u);
  EXPECT_EQ(*unique.rbegin(), static_cast<uint32_t>(kThreads * kEach));
  auto all = registry.all();
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
  for (const auto& record : all) EXPECT_EQ(record.state, "running");
}

// Two registries on one file (a second kdomd, or a tool reading it) never hand out one id twice.
TEST(RegistryTest, TwoConnectionsShareTheIdCounter) {
  TempDir temp;
  Registry first(temp.path());
  Registry second(temp.path());
  std::set<uint32_t> ids;
  for (int i = 0; i < 5; ++i) {
    DomainRecord a = make_record("a" + std::to_string(i));
    DomainRecord b = make_record("b" + std::to_string(i));
    ids.insert(first.add(a));
    ids.insert(second.add(b));
  }
  EXPECT_EQ(ids.size(), 10u);
  EXPECT_EQ(first.all().size(), 10u);
  DomainRecord clash = make_record("a0");
  EXPECT_THROW(second.add(clash), ConflictError);
}

}  // namespace
}  // namespace kdom::toolstack
