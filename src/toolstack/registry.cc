// Registry: kdomd's SQLite record of domains (see registry.h). Every SQLite failure becomes a
// one-line Error naming the registry file; name collisions become ConflictError.
#include "toolstack/registry.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <limits>

namespace kdom::toolstack {

namespace {

// PRAGMA application_id of every kdom registry ('kdom'): tells our file from any other SQLite file.
constexpr int32_t kApplicationId = 0x6b646f6d;

constexpr const char* kSchema = R"(
CREATE TABLE domains (
  id INTEGER PRIMARY KEY,
  name TEXT UNIQUE NOT NULL,
  uuid TEXT NOT NULL,
  config TEXT NOT NULL,
  state TEXT NOT NULL,
  start_time INTEGER,
  pid INTEGER,
  pid_start_ticks INTEGER,
  last_exit TEXT,
  target_mib INTEGER
);
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value
);
INSERT INTO meta (key, value) VALUES ('next_domain_id', 1);
)";

constexpr const char* kStoreSchema = R"(
CREATE TABLE store_nodes (
  path TEXT PRIMARY KEY,
  value BLOB NOT NULL,
  permissions TEXT NOT NULL
);
)";

constexpr const char* kDomainColumns =
    "SELECT id, name, uuid, config, state, start_time, pid, pid_start_ticks, last_exit, target_mib FROM domains";

[[noreturn]] void throw_sqlite_error(sqlite3* db, const std::string& path) {
  throw Error("registry " + path + ": " + sqlite3_errmsg(db));
}

// One prepared statement, finalized when it goes out of scope.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& path, const char* sql) : db_(db), path_(path) {
    if (sqlite3_prepare_v2(db_, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      sqlite3_finalize(stmt_);
      throw_sqlite_error(db_, path_);
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, int64_t value) { return check_bind(sqlite3_bind_int64(stmt_, index, value)); }
  Statement& bind(int index, const std::string& value) {
    return check_bind(sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT));
  }
  // "None" (0 or empty) is stored as NULL, which reads back as 0 or empty.
  Statement& bind_or_null(int index, int64_t value) {
    return value == 0 ? check_bind(sqlite3_bind_null(stmt_, index)) : bind(index, value);
  }
  Statement& bind_or_null(int index, const std::string& value) {
    return value.empty() ? check_bind(sqlite3_bind_null(stmt_, index)) : bind(index, value);
  }

  // True when a row is ready, false when the statement has finished.
  bool step() {
    const int result = sqlite3_step(stmt_);
    if (result == SQLITE_ROW) return true;
    if (result == SQLITE_DONE) return false;
    throw_sqlite_error(db_, path_);
  }
  void run() {
    while (step()) {
    }
  }

  int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string text(int column) const {
    const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    return data ? std::string(data, static_cast<size_t>(sqlite3_column_bytes(stmt_, column))) : std::string();
  }

 private:
  Statement& check_bind(int result) {
    if (result != SQLITE_OK) throw_sqlite_error(db_, path_);
    return *this;
  }

  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* stmt_ = nullptr;
};

void execute(sqlite3* db, const std::string& path, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) throw_sqlite_error(db, path);
}

int64_t query_integer(sqlite3* db, const std::string& path, const char* sql) {
  Statement statement(db, path, sql);
  if (!statement.step()) throw Error("registry " + path + ": '" + sql + "' returned no row");
  return statement.integer(0);
}

// A write transaction (BEGIN IMMEDIATE: takes the write lock at once, so a read-then-write
// cannot be overtaken by another connection). Rolled back unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& path) : db_(db), path_(path) {
    execute(db_, path_, "BEGIN IMMEDIATE");
  }
  ~Transaction() {
    // SQLite rolls some failed transactions back by itself (a full disk, for one): then there
    // is nothing left to roll back.
    if (!committed_ && !sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit() {
    execute(db_, path_, "COMMIT");
    committed_ = true;
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  bool committed_ = false;
};

DomainRecord read_record(const Statement& row, const std::string& path) {
  DomainRecord record;
  record.id = static_cast<uint32_t>(row.integer(0));
  record.name = row.text(1);
  record.uuid = row.text(2);
  record.config = nlohmann::json::parse(row.text(3), nullptr, /*allow_exceptions=*/false);
  if (record.config.is_discarded())
    throw Error("registry " + path + ": domain " + std::to_string(record.id) + " has a config that is not valid JSON");
  record.state = row.text(4);
  record.start_time = row.integer(5);
  record.pid = static_cast<int32_t>(row.integer(6));
  record.pid_start_ticks = static_cast<uint64_t>(row.integer(7));
  record.last_exit = row.text(8);
  record.target_mib = static_cast<uint64_t>(row.integer(9));
  return record;
}

// The id of the domain called name, if any.
std::optional<uint32_t> id_of(sqlite3* db, const std::string& path, const std::string& name) {
  Statement statement(db, path, "SELECT id FROM domains WHERE name = ?");
  statement.bind(1, name);
  if (!statement.step()) return std::nullopt;
  return static_cast<uint32_t>(statement.integer(0));
}

[[noreturn]] void throw_name_taken(const std::string& name, uint32_t id) {
  throw ConflictError("a domain named '" + name + "' exists already (id " + std::to_string(id) + ")");
}

[[noreturn]] void throw_no_domain(uint32_t id) { throw Error("no domain with id " + std::to_string(id)); }

// Creates directory (mode 0700) and any missing parents.
void make_directory(const std::string& directory) {
  std::error_code error;
  if (std::filesystem::is_directory(directory, error)) return;
  const std::filesystem::path parent = std::filesystem::path(directory).parent_path();
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, error);
    if (error) throw Error("cannot create the registry directory " + parent.string() + ": " + error.message());
  }
  if (mkdir(directory.c_str(), 0700) < 0 && errno != EEXIST)
    throw SystemError("cannot create the registry directory " + directory, errno);
}

}  // namespace

Registry::Registry(const std::string& directory)
    : path_((std::filesystem::path(directory) / "registry.db").string()) {
  make_directory(directory);
  if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close_v2(db_);
    throw Error("registry " + path_ + ": cannot open: " + message);
  }
  try {
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 5000);
    // Look before changing anything: a file that is not ours is refused untouched.
    FileKind kind = inspect_file();
    // WAL: readers never block the writer, and a commit is one append to the log.
    {
      Statement journal(db_, path_, "PRAGMA journal_mode=WAL");
      if (!journal.step() || journal.text(0) != "wal")
        throw Error("registry " + path_ + ": cannot use write-ahead logging (journal mode stays '" + journal.text(0) +
                    "')");
    }  // finalized here: a statement still open would block the schema's COMMIT
    execute(db_, path_, "PRAGMA foreign_keys=ON");
    // With WAL, NORMAL loses at most the last commits on a power cut, never consistency.
    execute(db_, path_, "PRAGMA synchronous=NORMAL");
    if (kind == FileKind::NewFile) create_schema();
    if (kind == FileKind::OlderRegistry) upgrade_schema();
  } catch (...) {
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw;
  }
}

Registry::~Registry() { sqlite3_close_v2(db_); }

Registry::FileKind Registry::inspect_file() const {
  int64_t application_id = 0;
  try {
    application_id = query_integer(db_, path_, "PRAGMA application_id");
  } catch (const Error&) {
    if ((sqlite3_errcode(db_) & 0xff) == SQLITE_NOTADB)
      throw Error("registry " + path_ + " is not an SQLite database (" + sqlite3_errmsg(db_) + ")");
    throw;
  }
  const int64_t version = query_integer(db_, path_, "PRAGMA user_version");
  const int64_t objects = query_integer(db_, path_, "SELECT count(*) FROM sqlite_schema");
  if (application_id == 0 && version == 0 && objects == 0) return FileKind::NewFile;
  if (application_id != kApplicationId) throw Error("registry " + path_ + " is not a kdom registry");
  if (version > kSchemaVersion)
    throw Error("registry " + path_ + " has schema version " + std::to_string(version) + "; this kdomd knows up to " +
                std::to_string(kSchemaVersion));
  if (version < 1)
    throw Error("registry " + path_ + " has schema version " + std::to_string(version) + ": it is damaged");
  return version < kSchemaVersion ? FileKind::OlderRegistry : FileKind::CurrentRegistry;
}

void Registry::create_schema() {
  Transaction transaction(db_, path_);
  // Another kdomd may have set the file up between our look and our lock.
  if (inspect_file() == FileKind::CurrentRegistry) return;
  execute(db_, path_, kSchema);
  execute(db_, path_, kStoreSchema);
  execute(db_, path_, ("PRAGMA application_id=" + std::to_string(kApplicationId)).c_str());
  execute(db_, path_, ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
  transaction.commit();
}

void Registry::upgrade_schema() {
  Transaction transaction(db_, path_);
  // Another kdomd may have upgraded it between our look and our lock.
  if (inspect_file() == FileKind::CurrentRegistry) return;
  const int64_t version = query_integer(db_, path_, "PRAGMA user_version");
  if (version == 1) {
    // Schema 1 kept mem-set's target inside the config JSON, beside the operator's keys.
    execute(db_, path_, "ALTER TABLE domains ADD COLUMN target_mib INTEGER");
    execute(db_, path_,
            "UPDATE domains SET target_mib = json_extract(config, '$.target_mib'), "
            "config = json_remove(config, '$.target_mib') WHERE json_type(config, '$.target_mib') IS NOT NULL");
  }
  if (version <= 2) execute(db_, path_, kStoreSchema);
  execute(db_, path_, ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
  transaction.commit();
}

uint32_t Registry::add(DomainRecord& record) {
  std::lock_guard lock(mutex_);
  Transaction transaction(db_, path_);
  const int64_t id = query_integer(db_, path_, "SELECT value FROM meta WHERE key = 'next_domain_id'");
  if (id < 1 || id > std::numeric_limits<uint32_t>::max())
    throw Error("registry " + path_ + ": no domain ids left (next would be " + std::to_string(id) + ")");
  Statement(db_, path_, "UPDATE meta SET value = value + 1 WHERE key = 'next_domain_id'").run();
  // A name collision still uses up the id: the counter's increment is committed on its own.
  if (auto holder = id_of(db_, path_, record.name)) {
    transaction.commit();
    throw_name_taken(record.name, *holder);
  }
  Statement insert(db_, path_,
                   "INSERT INTO domains (id, name, uuid, config, state, start_time, pid, pid_start_ticks, last_exit) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  insert.bind(1, id)
      .bind(2, record.name)
      .bind(3, record.uuid)
      .bind(4, record.config.dump())
      .bind(5, record.state)
      .bind_or_null(6, record.start_time)
      .bind_or_null(7, record.pid)
      .bind_or_null(8, static_cast<int64_t>(record.pid_start_ticks))
      .bind_or_null(9, record.last_exit)
      .run();
  transaction.commit();
  record.id = static_cast<uint32_t>(id);
  return record.id;
}

void Registry::remove(uint32_t id) {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, "DELETE FROM domains WHERE id = ?");
  statement.bind(1, id).run();
  if (sqlite3_changes(db_) == 0) throw_no_domain(id);
}

void Registry::rename(uint32_t id, const std::string& name) {
  std::lock_guard lock(mutex_);
  Transaction transaction(db_, path_);
  auto holder = id_of(db_, path_, name);
  if (holder && *holder != id) throw_name_taken(name, *holder);
  Statement statement(db_, path_, "UPDATE domains SET name = ? WHERE id = ?");
  statement.bind(1, name).bind(2, id).run();
  if (sqlite3_changes(db_) == 0) throw_no_domain(id);
  transaction.commit();
}

void Registry::set_state(uint32_t id, const std::string& state) {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, "UPDATE domains SET state = ? WHERE id = ?");
  statement.bind(1, state).bind(2, id).run();
  if (sqlite3_changes(db_) == 0) throw_no_domain(id);
}

void Registry::set_process(uint32_t id, int32_t pid, uint64_t pid_start_ticks, int64_t start_time) {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, "UPDATE domains SET pid = ?, pid_start_ticks = ?, start_time = ? WHERE id = ?");
  statement.bind_or_null(1, pid)
      .bind_or_null(2, static_cast<int64_t>(pid_start_ticks))
      .bind_or_null(3, start_time)
      .bind(4, id)
      .run();
  if (sqlite3_changes(db_) == 0) throw_no_domain(id);
}

void Registry::set_last_exit(uint32_t id, const std::string& last_exit) {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, "UPDATE domains SET last_exit = ? WHERE id = ?");
  statement.bind_or_null(1, last_exit).bind(2, id).run();
  if (sqlite3_changes(db_) == 0) throw_no_domain(id);
}

void Registry::set_target_mib(uint32_t id, uint64_t target_mib) {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, "UPDATE domains SET target_mib = ? WHERE id = ?");
  statement.bind_or_null(1, static_cast<int64_t>(target_mib)).bind(2, id).run();
  if (sqlite3_changes(db_) == 0) throw_no_domain(id);
}

void Registry::set_config(uint32_t id, const nlohmann::json& config) {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, "UPDATE domains SET config = ? WHERE id = ?");
  statement.bind(1, config.dump()).bind(2, id).run();
  if (sqlite3_changes(db_) == 0) throw_no_domain(id);
}

std::optional<DomainRecord> Registry::find(uint32_t id) const {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, (std::string(kDomainColumns) + " WHERE id = ?").c_str());
  statement.bind(1, id);
  if (!statement.step()) return std::nullopt;
  return read_record(statement, path_);
}

std::optional<DomainRecord> Registry::find_by_name(const std::string& name) const {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, (std::string(kDomainColumns) + " WHERE name = ?").c_str());
  statement.bind(1, name);
  if (!statement.step()) return std::nullopt;
  return read_record(statement, path_);
}

std::vector<DomainRecord> Registry::all() const {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, (std::string(kDomainColumns) + " ORDER BY id").c_str());
  std::vector<DomainRecord> records;
  while (statement.step()) records.push_back(read_record(statement, path_));
  return records;
}

std::vector<StoredNode> Registry::store_nodes() const {
  std::lock_guard lock(mutex_);
  Statement statement(db_, path_, "SELECT path, value, permissions FROM store_nodes ORDER BY path");
  std::vector<StoredNode> nodes;
  while (statement.step()) nodes.push_back({statement.text(0), statement.text(1), statement.text(2)});
  return nodes;
}

void Registry::store_apply(const std::vector<StoredNode>& written, const std::vector<std::string>& removed) {
  std::lock_guard lock(mutex_);
  Transaction transaction(db_, path_);
  for (const std::string& path : removed) Statement(db_, path_, "DELETE FROM store_nodes WHERE path = ?").bind(1, path).run();
  for (const StoredNode& node : written)
    Statement(db_, path_, "INSERT OR REPLACE INTO store_nodes (path, value, permissions) VALUES (?, ?, ?)")
        .bind(1, node.path)
        .bind(2, node.value)
        .bind(3, node.permissions)
        .run();
  transaction.commit();
}

}  // namespace kdom::toolstack
