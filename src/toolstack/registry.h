// Registry: kdomd's record of the domains on this host, in SQLite (WAL, schema version kept in
// the file). It says which domains exist, their configs and states, and which VMM process runs
// each, so a restarted daemon can find every domain again; it also keeps the store's nodes. Domain ids are allocated from a
// counter kept in the database: never reused, across daemon restarts too.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"

struct sqlite3;

namespace kdom::toolstack {

// A name already taken, or a record that changed under the caller: the API's 409.
class ConflictError : public Error {
 public:
  using Error::Error;
};

struct DomainRecord {
  uint32_t id = 0;
  std::string name;
  std::string uuid;
  nlohmann::json config;   // the DomainConfig's JSON
  std::string state;       // "starting", "running", "paused", "shutdown", "crashed", "dying"...
  int64_t start_time = 0;  // Unix seconds when the current VMM process was started (0: none)
  int32_t pid = 0;         // the VMM process, 0 when none
  uint64_t pid_start_ticks = 0;  // the process's start time (/proc/PID/stat field 22): tells a reused pid
  std::string last_exit;   // why the last VMM process stopped (one line), empty if none
  uint64_t target_mib = 0;  // the memory target mem-set gave, 0 when none (all its memory)
};

// One node of the store (toolstack/store.h) as the registry keeps it.
struct StoredNode {
  std::string path, value, permissions;
};

class Registry {
 public:
  // 2: target_mib has a column (1 kept it in the config JSON); 3: the store's nodes. Older
  // files are upgraded on open.
  static constexpr int kSchemaVersion = 3;

  // Opens or creates DIR/registry.db (DIR is created if missing). Throws Error naming the file
  // when it cannot be opened, is not a kdom registry, or has a newer schema than this kdomd's.
  explicit Registry(const std::string& directory);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Adds a domain with a fresh id (returned, also set in the record). Throws ConflictError when
  // the name is taken. The id counter moves on even if the insert fails.
  uint32_t add(DomainRecord& record);
  void remove(uint32_t id);
  // Throws ConflictError when another domain has the name.
  void rename(uint32_t id, const std::string& name);
  void set_state(uint32_t id, const std::string& state);
  void set_process(uint32_t id, int32_t pid, uint64_t pid_start_ticks, int64_t start_time);
  void set_last_exit(uint32_t id, const std::string& last_exit);
  void set_config(uint32_t id, const nlohmann::json& config);
  void set_target_mib(uint32_t id, uint64_t target_mib);  // 0: none

  std::optional<DomainRecord> find(uint32_t id) const;
  std::optional<DomainRecord> find_by_name(const std::string& name) const;
  std::vector<DomainRecord> all() const;  // by id

  std::vector<StoredNode> store_nodes() const;
  // Writes and removes the store's nodes in one transaction.
  void store_apply(const std::vector<StoredNode>& written, const std::vector<std::string>& removed);

 private:
  // Checks what kind of file db_ is; NewFile means an empty database this kdomd may set up.
  enum class FileKind { NewFile, OlderRegistry, CurrentRegistry };
  FileKind inspect_file() const;
  void create_schema();
  void upgrade_schema();  // an OlderRegistry to kSchemaVersion, in one transaction

  // The daemon calls in from several threads; one connection, used by one thread at a time.
  mutable std::mutex mutex_;
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace kdom::toolstack
