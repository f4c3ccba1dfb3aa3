// Supervisor: live migration (xl migrate), both ends (docs/migration.md). The source kdomd
// says hello, hands the connection to its VMM, which sends the domain in rounds while it runs,
// pauses it for the last, lets go of its disks' locks (flushed) and sends the rest; the
// destination kdomd starts a VMM that reads the stream from the connection, takes the locks
// and runs the guest the moment the stream ends. Then:
//   destination -> resumed  (the VMM runs the guest: the point of no return)
//   source      -> done     (its copy destroyed; the destination takes the domain's name)
// No round trip between the daemons while the guest stands still. Before "resumed" every
// failure leaves the domain running on the source; the image locks decide a lost "resumed": a
// source that cannot take its disks back does not run the guest, the destination that holds
// them does.
#include <sys/socket.h>

#include <chrono>
#include <string_view>
#include <thread>

#include "base/elapsed.h"
#include "base/error.h"
#include "base/log.h"
#include "toolstack/migration_protocol.h"
#include "toolstack/supervisor.h"
#include "vmm/control_client.h"

namespace kdom::toolstack {

namespace {

using json = nlohmann::json;

constexpr int kAnswerMs = 30'000;    // the destination's answer to the hello
constexpr int kHelloMs = 10'000;     // a connection's hello, on the destination
constexpr int kResumedMs = 300'000;  // after the stream's end: the destination loads the devices
constexpr int kDoneMs = 30'000;      // the source destroying its copy
// The VMM's pre-copy ends when it converges, runs out of rounds, is cancelled or breaks.
constexpr int kMigrateSendSeconds = 24 * 3600;
constexpr char kIncomingSuffix[] = "--incoming";
// Between a migrated domain's RARP announcements, after the first.
constexpr std::chrono::milliseconds kAnnounceGaps[] = {std::chrono::milliseconds(50), std::chrono::milliseconds(100),
                                                       std::chrono::milliseconds(150), std::chrono::milliseconds(200)};

// A message that must be `expected`; an {"error"} from the peer is thrown as its own line.
json expect_message(int fd, int timeout_ms, const std::string& peer, const std::string& waiting_for,
                    const char* expected) {
  json message = receive_migration_message(fd, timeout_ms, peer, waiting_for);
  if (const auto error = message.find("error"); error != message.end())
    throw MigrationError(peer + ": " + (error->is_string() ? error->get<std::string>() : error->dump()));
  if (!message.value(expected, false)) throw MigrationError(peer + " sent " + message.dump() + " instead of '" + expected + "'");
  return message;
}

// The VMM's line without what kdomd says itself: "migrate-send: X; the domain runs on" -> "X".
std::string vmm_reason(std::string line) {
  constexpr std::string_view kPrefix = "migrate-send: ";
  if (line.rfind(kPrefix, 0) == 0) line.erase(0, kPrefix.size());
  for (const std::string_view suffix : {"; the domain runs on", "; the domain stays paused"})
    if (line.size() > suffix.size() && line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0)
      line.erase(line.size() - suffix.size());
  return line;
}

// Tells the peer why it failed, if the connection still takes it.
void send_error(int fd, const std::string& why, const std::string& peer) {
  try {
    send_migration_message(fd, {{"error", why}}, peer);
  } catch (const std::exception&) {
  }
}

}  // namespace

void Supervisor::set_job(Runtime& runtime, json job) {
  std::lock_guard lock(mutex_);
  if (job.is_null()) {
    runtime.job = nullptr;
    runtime.migration_fd = -1;
    return;
  }
  if (!runtime.job.is_object()) runtime.job = json::object();
  runtime.job.update(job);
}

json Supervisor::migrate(const std::string& dom, const MigrateOptions& options) {
  const auto [host, port] = migration_target(options.target);
  const bool local = host == "localhost" && options.target.find(':') == std::string::npos;
  const std::string peer = local ? "this host's kdomd" : "the destination " + host + ":" + std::to_string(port);
  auto runtime = runtime_of(dom);
  std::unique_lock operation(runtime->operation);
  const DomainRecord record = record_of(runtime->id);
  require_live_vmm(dom, record.state, "running or paused");
  const bool was_paused = record.state == "paused";
  const auto started = std::chrono::steady_clock::now();

  // localhost: the same stream and steps, with this daemon's own receiving side on a thread.
  UniqueFd connection;
  std::string token = options.token.empty() ? migration_token_ : options.token;
  std::thread receiver;
  if (local) {
    int ends[2];
    check_syscall(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), "socketpair");
    connection.reset(ends[0]);
    token = make_uuid();
    receiver = std::thread([this, end = UniqueFd(ends[1]), token]() mutable { receive_migration(std::move(end), token); });
  } else {
    if (token.empty())
      throw Error("no migration token for " + host + ": give the destination's (kdom migrate --token-file) or start "
                  "this kdomd with --token-file");
    connection = connect_migration_peer(host, port, 10'000);
  }
  const int fd = connection.get();
  // Whatever happens, the connection is closed before the receiving thread is waited for.
  struct Ends {
    UniqueFd& connection;
    std::thread& receiver;
    ~Ends() {
      if (connection.valid()) ::shutdown(connection.get(), SHUT_RDWR);
      if (receiver.joinable()) receiver.join();
    }
  } ends{connection, receiver};

  send_migration_hello(fd, token, {{"config", record.config}, {"paused", was_paused}}, peer);
  const json answer = receive_migration_message(fd, kAnswerMs, peer, "its answer to the migration");
  if (const auto error = answer.find("error"); error != answer.end())
    throw Error("the destination refused the migration of " + record.name + ": " + error->get<std::string>());
  log_line("domain " + std::to_string(runtime->id) + " '" + record.name + "': migrating to " + options.target);
  publish("migrating", runtime->id, record.name, {{"to", options.target}});

  {
    std::lock_guard lock(mutex_);
    runtime->migration_fd = fd;
  }
  set_job(*runtime, {{"kind", "migrate"}, {"target", options.target}, {"phase", "precopy"}, {"round", 0},
                     {"sent_bytes", 0}, {"total_bytes", record.config.value("memory_mib", uint64_t{0}) << 20}});
  const auto fail_here = [&](const std::string& why) {
    set_job(*runtime, nullptr);
    publish("migration-failed", runtime->id, record.name, {{"to", options.target}, {"error", why}});
    return Error("the migration of " + record.name + " to " + options.target + " failed: " + why + "; the domain " +
                 (was_paused ? "stays paused" : "runs on") + " here");
  };

  json sent;
  try {
    sent = vmm::control_request_with_fd(runtime->run_dir + "/control.sock",
                                        {{"op", "migrate-send"},
                                         {"downtime_ms", options.downtime_ms},
                                         {"max_rounds", options.max_rounds},
                                         {"max_bandwidth_mib", options.max_bandwidth_mib},
                                         {"auto_converge", options.auto_converge},
                                         {"release_disks", true},
                                         {"toolstack", record.config}},
                                        fd, kMigrateSendSeconds);
  } catch (const std::exception& error) {
    // The VMM has resumed the guest itself. The destination may have said why it stopped reading.
    std::string why = vmm_reason(error.what());
    try {
      const json said = receive_migration_message(fd, 1000, peer, "its reason");
      if (said.contains("error") && said["error"].is_string()) why = peer + ": " + said["error"].get<std::string>();
    } catch (const std::exception&) {
    }
    throw fail_here(why);
  }
  // The guest stands still here, its disks let go; the destination runs it once it has
  // loaded the stream. Too late to cancel: it may be running there already.
  const auto paused_here = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    runtime->migration_fd = -1;
  }
  set_job(*runtime, {{"phase", "handover"}});
  json resumed;
  try {
    resumed = expect_message(fd, kResumedMs, peer, "the destination to resume the domain", "resumed");
  } catch (const std::exception& error) {
    const std::string why = error.what();
    try {
      control(*runtime, {{"op", "disk-locks"}, {"hold", true}}, 60);
    } catch (const std::exception& lock_error) {
      // Another process has the disks: most likely the destination runs the guest already.
      set_job(*runtime, nullptr);
      change_state(runtime->id, "paused");
      throw Error("the migration of " + record.name + " to " + options.target + " broke off after its last round (" +
                  why + ") and its disks cannot be taken back (" + lock_error.what() +
                  "): the destination may be running it; it stays paused here");
    }
    send_error(fd, why, peer);
    if (!was_paused) control(*runtime, {{"op", "unpause"}});
    throw fail_here(why);
  }
  // The point of no return is behind: the domain runs on the destination.
  const auto resumed_at = std::chrono::steady_clock::now();
  const double handover_s = seconds_since(paused_here);
  set_job(*runtime, nullptr);
  operation.unlock();
  try {
    destroy(std::to_string(runtime->id));
  } catch (const std::exception& error) {
    log_line("domain " + std::to_string(runtime->id) + " '" + record.name + "' migrated, but its copy here: " + error.what());
  }
  try {
    send_migration_message(fd, {{"done", true}}, peer);
  } catch (const std::exception& error) {
    log_line("migration of '" + record.name + "': " + error.what());
  }
  publish("migrated", runtime->id, record.name, {{"to", options.target}});
  // From the VMM's pause (its clock is this host's) to "resumed": the whole pause, the
  // destination's load and start and the VMM's reply to this daemon included.
  const int64_t paused_at_ns = sent.value("paused_at_ns", int64_t{0});
  const double downtime_ms =
      paused_at_ns > 0 ? static_cast<double>(monotonic_ns(resumed_at) - paused_at_ns) / 1e6
                       : sent.value("downtime_ms", 0.0) + handover_s * 1000.0;
  log_line("domain " + std::to_string(runtime->id) + " '" + record.name + "' migrated to " + options.target + " in " +
           std::to_string(seconds_since(started)) + " s, " + std::to_string(sent.value("rounds", 0)) + " rounds, " +
           std::to_string(static_cast<int>(downtime_ms)) + " ms paused");
  return {{"name", record.name},
          {"target", options.target},
          {"destination_id", resumed.value("id", 0)},
          {"rounds", sent.value("rounds", 0)},
          {"sent_bytes", sent.value("sent_bytes", uint64_t{0})},
          {"seconds", seconds_since(started)},
          {"downtime_ms", downtime_ms},
          {"vmm_downtime_ms", sent.value("downtime_ms", 0.0)},
          {"vmm_downtime_parts", sent.value("downtime_parts", json::object())},
          {"paused_at_monotonic_ns", paused_at_ns},
          {"throttle_percent", sent.value("throttle_percent", 0)},
          {"dirty_log", sent.value("dirty_log", "")}};
}

json Supervisor::cancel_migration(const std::string& dom) {
  auto runtime = runtime_of(dom);
  bool precopy;
  {
    std::lock_guard lock(mutex_);
    if (!runtime->job.is_object() || runtime->job.value("kind", "") != "migrate")
      throw ConflictError("domain " + dom + " is not migrating");
    if (runtime->migration_fd < 0)
      throw ConflictError("the migration of domain " + dom + " is past the point where it can be cancelled");
    precopy = runtime->job.value("phase", "") == "precopy";
    // Cut: the VMM's writes and kdomd's waits on the connection end at once.
    ::shutdown(runtime->migration_fd, SHUT_RDWR);
    runtime->migration_fd = -1;
  }
  if (precopy) {
    try {
      control(*runtime, {{"op", "migrate-cancel"}});
    } catch (const std::exception& error) {
      log_line("cancel of the migration of domain " + dom + ": " + error.what());
    }
  }
  return {{"cancelled", true}};
}

void Supervisor::receive_migration(UniqueFd connection, const std::string& token) {
  const int fd = connection.get();
  const std::string peer = "the source";
  json hello;
  try {
    hello = receive_migration_hello(fd, token, kHelloMs);
  } catch (const std::exception& error) {
    log_line(std::string("incoming migration refused: ") + error.what());
    send_error(fd, error.what(), peer);
    return;
  }
  config::DomainConfig config;
  std::string name;
  const bool paused = hello.value("paused", false);
  try {
    if (!hello.contains("config") || !hello["config"].is_object()) throw Error("the hello has no domain config");
    config = config::domain_config_from_json(hello["config"]);
    name = config.name;
    // The same name here (a migration to localhost, or a leftover): arrives under another one
    // and takes its own once the source's copy is gone.
    if (registry_.find_by_name(name)) {
      config.name = name + kIncomingSuffix;
      if (registry_.find_by_name(config.name))
        throw Error("domains named '" + name + "' and '" + config.name + "' exist here already");
    }
    check_launchable(config);
    send_migration_message(fd, {{"ok", true}}, peer);
  } catch (const std::exception& error) {
    log_line(std::string("incoming migration of '") + name + "' refused: " + error.what());
    send_error(fd, error.what(), peer);
    return;
  }
  log_line("incoming migration of '" + name + "'");
  // The moment the VMM is ready the guest runs here (unless it came paused): the source, its
  // guest standing still until then, hears so at once.
  Incoming incoming{fd, name, nullptr};
  if (!paused)
    incoming.on_ready = [&](uint32_t arrived) {
      try {
        send_migration_message(fd, {{"resumed", true}, {"id", arrived}}, peer);
      } catch (const std::exception& error) {
        // It runs here with the disks' locks: the source cannot take them back, and stays paused.
        log_line("incoming migration of '" + name + "': " + error.what() + " (the domain runs here)");
      }
    };
  uint32_t id = 0;
  try {
    id = launch(config, paused, "", &incoming).value("id", 0u);
  } catch (const std::exception& error) {
    log_line(std::string("incoming migration of '") + name + "' failed: " + error.what());
    send_error(fd, error.what(), peer);
    return;
  }
  const std::string dom = std::to_string(id);
  if (paused) {
    // It stays paused, as it was there; it is this host's once it holds the disks.
    try {
      auto runtime = runtime_of(dom);
      std::lock_guard operation(runtime->operation);
      control(*runtime, {{"op", "disk-locks"}, {"hold", true}}, 60);
      send_migration_message(fd, {{"resumed", true}, {"id", id}}, peer);
    } catch (const std::exception& error) {
      log_line("incoming migration of '" + name + "' failed: " + error.what() + "; domain " + dom + " removed");
      send_error(fd, error.what(), peer);
      try {
        destroy(dom);
      } catch (const std::exception& destroy_error) {
        log_line(std::string("incoming migration: ") + destroy_error.what());
      }
      return;
    }
  }
  // Switches learn where the guest's MACs went: a RARP from each NIC, at once and then again
  // over half a second (as QEMU does), for a switch or bridge that missed the first.
  const auto announce = [&] {
    try {
      control(*runtime_of(dom), {{"op", "announce"}});
      return true;
    } catch (const std::exception& error) {
      log_line("domain " + dom + " '" + config.name + "': announce after migration: " + error.what());
      return false;
    }
  };
  const auto first_announce = std::chrono::steady_clock::now();
  bool announcing = !paused && announce();
  publish("migrated-in", id, config.name);
  log_line("domain " + dom + " '" + config.name + "' arrived by migration and " + (paused ? "stays paused" : "runs"));
  try {
    expect_message(fd, kDoneMs, peer, "the source to finish", "done");
  } catch (const std::exception& error) {
    log_line("incoming migration of '" + name + "': " + error.what() + " (the domain runs here)");
  }
  if (config.name != name) {
    try {
      rename(dom, name);
    } catch (const std::exception& error) {
      log_line("domain " + dom + " keeps the name '" + config.name + "': " + error.what());
    }
  }
  // The repeats after the domain has its name: whoever waits for the source's "migrated" finds
  // it here by that name.
  auto announce_at = first_announce;
  for (const auto gap : kAnnounceGaps) {
    if (!announcing) break;
    announce_at += gap;
    std::this_thread::sleep_until(announce_at);
    announcing = announce();
  }
}

}  // namespace kdom::toolstack
