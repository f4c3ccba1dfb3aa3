// Supervisor: save and restore (xl save, xl restore). The VMM writes and reads the snapshot
// (docs/snapshot-format.md); kdomd keeps its own config of the domain in the snapshot's config
// record, so a restore brings back the domain as kdomd knew it: name, actions, devices
// attached since it was created; `key=value` overrides change what the restored machine can
// take (config/restore_changes.h).
#include <filesystem>

#include "base/error.h"
#include "base/log.h"
#include "config/restore_changes.h"
#include "snapshot/snapshot_source.h"
#include "toolstack/supervisor.h"

namespace kdom::toolstack {

namespace {

// Writing a large domain to a slow disk takes a while: the VMM's reply may be long in coming.
constexpr int kSaveReplySeconds = 3600;

}  // namespace

nlohmann::json Supervisor::save(const std::string& dom, const std::string& path, const std::string& then) {
  if (then != "destroy" && then != "running" && then != "paused")
    throw Error("after a save the domain is destroyed, running or paused, not '" + then + "'");
  if (path.empty() || path.front() != '/') throw Error("the file to save to must be an absolute path, not '" + path + "'");
  if (!std::filesystem::is_directory(std::filesystem::path(path).parent_path()))
    throw Error("cannot save to '" + path + "': its directory does not exist");
  auto runtime = runtime_of(dom);
  nlohmann::json reply;
  std::string name;
  {
    std::lock_guard operation(runtime->operation);
    const auto record = record_of(runtime->id);
    name = record.name;
    require_live_vmm(dom, record.state, "running or paused");
    set_job(*runtime, {{"kind", "save"}, {"done_bytes", 0}, {"total_bytes", 0}});
    try {
      reply = control(*runtime,
                      {{"op", "save"},
                       {"path", path},
                       {"then", then == "running" ? "running" : "paused"},
                       {"toolstack", record.config}},
                      kSaveReplySeconds);
    } catch (...) {
      set_job(*runtime, nullptr);
      throw;
    }
    set_job(*runtime, nullptr);
    reply.erase("ok");
    if (then == "paused") change_state(runtime->id, "paused");
    publish("saved", runtime->id, name, {{"path", path}});
  }
  log_line("domain " + std::to_string(runtime->id) + " '" + name + "' saved to " + path);
  if (then == "destroy") destroy(std::to_string(runtime->id));
  reply["path"] = path;
  reply["name"] = name;
  reply["then"] = then;
  return reply;
}

nlohmann::json Supervisor::restore(const std::string& path, bool paused, const std::vector<std::string>& overrides,
                                   const std::optional<std::string>& name) {
  if (path.empty() || path.front() != '/')
    throw Error("the file to restore from must be an absolute path, not '" + path + "'");
  snapshot::SnapshotSource source(path);
  if (!source.toolstack().is_object())
    throw Error("snapshot '" + path + "' was not saved by kdomd (restore it with kdom run --restore)");
  const config::DomainConfig saved = config::domain_config_from_json(source.toolstack());
  config::DomainConfig config = config::restored_config(saved, overrides);
  if (name) {
    if (config.name != saved.name) throw Error("the new name is given twice: as \"name\" and as the override name=");
    config.name = *name;
  }
  // The saved domain may still run (saved with -c): then this one is another domain.
  for (const auto& record : registry_.all())
    if (record.uuid == config.uuid) config.uuid = make_uuid();
  return launch(config, paused, path);
}

}  // namespace kdom::toolstack
