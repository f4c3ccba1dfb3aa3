// Supervisor: kdomd's domains at run time. It starts one VMM process per domain (`kdom run
// --config`, in a session of its own so it outlives the daemon), learns that it is up from its
// readiness fd, watches it with a pidfd, maps its end to poweroff / reboot / crash through the
// exit file the VMM writes, and applies the domain's on_poweroff / on_reboot / on_crash action.
// At start it re-adopts the VMMs a previous daemon left running and settles those that died
// meanwhile. Every change is recorded in the registry before or as it happens. It listens to
// each running VMM's events (VmmEvents): why it is stopping (preferred to the exit file, which
// stays for a VMM that ended while no daemon listened), the balloon reaching its target (the
// domain's actual memory), pauses made by others. Every change it makes or learns of is
// published on its EventBus (GET /v1/events). It keeps each domain's keys in the store
// (/local/domain/<id>/..., /vm/<uuid>/...) as xl's toolstack does in xenstore, and serves
// them to the guest itself over vsock.
#pragma once

#include <sys/types.h>

#include <array>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "config/domain_config.h"
#include "toolstack/console_hub.h"
#include "toolstack/event_bus.h"
#include "toolstack/registry.h"
#include "toolstack/store.h"
#include "toolstack/store_guest_server.h"
#include "toolstack/vmm_events.h"
#include "vmm/vm_config.h"

namespace kdom::toolstack {

// An unknown domain: the API's 404.
class NotFoundError : public Error {
 public:
  using Error::Error;
};
// A wait that ran out (shutdown -w): the API's 504.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

struct DaemonPaths {
  std::string run_dir = "/run/kdom";      // domains/<id>/: the VMM's sockets, config, exit file
  std::string log_dir = "/var/log/kdom";  // <name>.log: each domain's console
  std::string vmm_binary;                 // the kdom binary that runs a domain
};

// What the VMM's config becomes for domain `domid`, whose files live in `run_dir`.
vmm::VmConfig vm_config_for(const config::DomainConfig& config, const std::string& run_dir, uint32_t domid);
// The TAP a domain's NIC uses: the one named in its config (vifname=), or, for a NIC on a
// bridge, the one kdomd makes for it, kdom<domid>.<devid>.
std::string tap_name(uint32_t domid, const config::VifSpec& vif);
// A NIC's MAC (config::assign_device_names gave every vif one).
std::array<uint8_t, 6> vif_mac(const config::VifSpec& vif);
// A disk's and a NIC's keys in the store, under device/vbd/<vdev>/ and device/vif/<devid>/.
std::vector<std::pair<std::string, std::string>> disk_keys(const config::DiskSpec& disk);
std::vector<std::pair<std::string, std::string>> vif_keys(const config::VifSpec& vif);
// What the VMM is given for a disk or NIC of domain `domid` (vmm_net: its TAP, vif<devid>).
vmm::DiskConfig vmm_disk(const config::DiskSpec& disk);
vmm::NetConfig vmm_net(uint32_t domid, const config::VifSpec& vif);
// A random (version 4) UUID, for a domain whose config has none.
std::string make_uuid();

// kdom migrate: where to and how (docs/migration.md).
struct MigrateOptions {
  std::string target;  // "HOST", "HOST:PORT", or "localhost" (no network: inside this kdomd)
  std::string token;   // the destination's migration token; empty: this kdomd's own
  uint32_t downtime_ms = 50;       // the pause the last round may take, at the measured bandwidth
  uint32_t max_bandwidth_mib = 0;  // MiB/s the stream may use; 0: no limit
  uint32_t max_rounds = 30;        // rounds of dirty pages before the last one, at most
  bool auto_converge = true;       // throttle the vCPUs of a guest that dirties faster than the link
};

class Supervisor {
 public:
  // A VMM has this long to build its domain and say it is ready (the nested test host is slow).
  static constexpr int kReadySeconds = 120;
  // An incoming migration's VMM is ready once the source has sent everything (its pre-copy).
  static constexpr int kIncomingReadySeconds = 6 * 3600;
  // More restarts than this within kRestartWindowSeconds: the domain is left crashed instead.
  static constexpr int kMaxRestarts = 5;
  static constexpr int kRestartWindowSeconds = 60;

  Supervisor(Registry& registry, Store& store, DaemonPaths paths);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Re-adopts live VMMs recorded in the registry; settles the dead ones (their on_* action).
  void recover();

  nlohmann::json create(const config::DomainConfig& config, bool paused);
  // xl save: the whole domain to the file `path` (absolute; docs/snapshot-format.md), with
  // this daemon's config of it; then (`then`) the domain is destroyed ("destroy", xl's
  // default), runs on ("running", -c) or stays paused ("paused", -p). A save that fails leaves
  // the domain as it was and throws Error saying why.
  nlohmann::json save(const std::string& dom, const std::string& path, const std::string& then);
  // xl restore: a new domain from a file save() wrote, carrying on where it was saved (paused
  // with `paused`), with the config kdomd saved in it changed by xl.cfg `key=value` overrides
  // (config::restored_config: another name, other lifecycle actions, disk targets, bridges...;
  // what the restored machine cannot take is refused before anything starts). `name`, the
  // API's older way to rename (the saved name may be in use: save -c), is the same as an
  // override name=...; both at once are refused.
  nlohmann::json restore(const std::string& path, bool paused, const std::vector<std::string>& overrides,
                         const std::optional<std::string>& name = std::nullopt);
  // xl migrate: moves a running (or paused) domain to the kdomd at options.target while it
  // runs (iterative pre-copy by its VMM, then a short pause), and destroys it here once the
  // destination says it runs there. Until then any failure (refused, connection cut,
  // destination gone, cancelled) leaves the domain running here as it was, and throws Error
  // saying why. The domain's job shows the rounds meanwhile.
  nlohmann::json migrate(const std::string& dom, const MigrateOptions& options);
  // Stops the migration of `dom` under way (ConflictError when there is none, or when it is
  // past the point of no return); the domain runs on here.
  nlohmann::json cancel_migration(const std::string& dom);
  // The destination's side of a migration, on a connection accepted from the migration port
  // (or one end of a socketpair, for localhost): checks the hello against `token`, starts the
  // domain from the stream, and resumes it when the source has let go. Never throws: what
  // went wrong is logged and told to the source; nothing half-made is left behind.
  void receive_migration(UniqueFd connection, const std::string& token);
  // The token this kdomd sends when a migration request names none (its --token-file's).
  void set_migration_token(std::string token) { migration_token_ = std::move(token); }
  nlohmann::json list();
  nlohmann::json info(const std::string& dom);
  uint32_t destroy(const std::string& dom);
  nlohmann::json pause(const std::string& dom);
  nlohmann::json unpause(const std::string& dom);
  // Presses the power button; with `wait_seconds`, returns once that VMM has stopped.
  nlohmann::json shutdown(const std::string& dom, std::optional<uint32_t> wait_seconds);
  // The domain stops as rebooted and its on_reboot action runs; returns once that is done.
  nlohmann::json reboot(const std::string& dom);
  nlohmann::json rename(const std::string& dom, const std::string& new_name);
  nlohmann::json mem_set(const std::string& dom, uint64_t memory_mib);
  std::shared_ptr<ConsoleHub> console(const std::string& dom);
  // The domain's figures: CPU time, memory, its VMM's resident memory, each vCPU (thread,
  // CPU time, last CPU, affinity, exits by reason), each disk and NIC, its balloon; a domain
  // without a live VMM has only the first ones.
  nlohmann::json stats(const std::string& dom);
  // stats() of every domain, for /metrics.
  nlohmann::json all_stats();
  // Lets vCPU `vcpu` of the domain run only on `cpus` (xl's CPU list: "0-3,5", "all").
  nlohmann::json vcpu_pin(const std::string& dom, uint32_t vcpu, const std::string& cpus);
  size_t domain_count();
  EventBus& events() { return events_; }

  // Hot-plug, as xl's block-attach, block-detach, block-list, network-attach, network-detach
  // and network-list, on a running or paused domain (ConflictError otherwise). An attached
  // device joins the domain's config, so a restart keeps it; its keys are in the store
  // (device/vbd/<vdev>/, device/vif/<devid>/); "device-attached" and "device-detached" are
  // published. Detach asks the guest to let go and returns once it has, or throws
  // TimeoutError after `wait_seconds` (the request stands: a guest that lets go later still
  // loses the device); `force` takes it away at once. A NIC is named by its devid or its MAC.
  nlohmann::json block_attach(const std::string& dom, config::DiskSpec disk);
  nlohmann::json block_detach(const std::string& dom, const std::string& vdev, bool force, uint32_t wait_seconds);
  nlohmann::json block_list(const std::string& dom);
  nlohmann::json network_attach(const std::string& dom, config::VifSpec vif);
  nlohmann::json network_detach(const std::string& dom, const std::string& nic, bool force, uint32_t wait_seconds);
  nlohmann::json network_list(const std::string& dom);

 private:
  struct Runtime {
    uint32_t id = 0;
    std::mutex operation;  // one lifecycle operation at a time
    pid_t pid = 0;
    UniqueFd pidfd;
    bool is_child = false;     // started by this daemon (it reaps it), not re-adopted
    bool destroying = false;
    uint64_t process_ends = 0;  // how many VMM processes of this domain have ended
    bool gone = false;          // destroyed: removed from the registry
    std::vector<int64_t> restart_times;
    std::shared_ptr<ConsoleHub> console;
    std::string run_dir;
    // From the running VMM's events: why it said it is stopping, and its balloon's size.
    struct StopReport {
      std::string reason, message;
    };
    std::optional<StopReport> stopping;
    uint64_t balloon_mib = 0;
    // A save under way: {"kind":"save","done_bytes":..,"total_bytes":..}, from the VMM's
    // save-progress events; null otherwise.
    nlohmann::json job;  // (a late event after the save's end finds it null and is dropped)
    // A restore under way: the VMM reading the snapshot (its job is how far it has read).
    pid_t restoring_pid = 0;
    std::string restoring_from;
    // An outgoing migration: its connection (for a cancel to cut) while it can still be
    // cancelled, -1 otherwise. Its job is {"kind":"migrate","phase":..,...}.
    int migration_fd = -1;
  };

  // Refuses (409) a request that needs the domain's VMM when the domain has none running: it is
  // being built, shut down, crashed or dying. `wanted` names the state the request was for.
  static void require_live_vmm(const std::string& dom, const std::string& state, const char* wanted);
  std::shared_ptr<Runtime> runtime_of(const std::string& dom);
  DomainRecord record_of(uint32_t id);
  nlohmann::json describe(const DomainRecord& record);
  nlohmann::json stats_of(const DomainRecord& record);
  // Starts the VMM for `record` and waits for it to be ready; throws Error with the VMM's own
  // reason when it fails. Called with runtime.operation held.
  // `restore_from`: a snapshot the VMM restores (kdom run --restore) instead of booting.
  // An incoming migration: the connection the VMM reads the stream from, whose console log
  // the domain continues (a domain arriving under a stand-in name), and what to do the moment
  // its VMM is ready (must not throw).
  struct Incoming {
    int fd = -1;
    std::string log_name;
    std::function<void(uint32_t id)> on_ready;
  };
  void start_vmm(Runtime& runtime, const DomainRecord& record, bool paused, const std::string& restore_from = "",
                 const Incoming* incoming = nullptr);
  // create() and restore(): records the domain, makes its TAPs and run directory and starts its
  // VMM; nothing is left behind when that fails.
  nlohmann::json launch(config::DomainConfig config, bool paused, const std::string& restore_from,
                        const Incoming* incoming = nullptr);
  // Throws Error for a config this host cannot start: invalid, or its files missing.
  static void check_launchable(const config::DomainConfig& config);
  // A save's or migration's job, shown by describe: set (merged into what is there), or ended (null).
  void set_job(Runtime& runtime, nlohmann::json job);
  void watch(Runtime& runtime);
  // Subscribes to the VMM's events; a VMM that does not answer is logged (its exit file still
  // tells why it stops).
  void listen_to_events(Runtime& runtime, const std::string& name);
  // Every event of every domain's VMM comes here, in the order its VMM sent them (VmmEvents's
  // thread). Never takes a Runtime's operation lock: settling waits for the events first.
  void on_domain_event(uint32_t id, const nlohmann::json& event);
  void watcher_loop();
  void on_vmm_exit(uint32_t id);
  // Applies the action for a VMM that stopped for `reason` ("poweroff", "reboot", "crash"...).
  void settle(Runtime& runtime, const std::string& reason, const std::string& message);
  void remove_domain(Runtime& runtime);
  void clean_run_dir(const std::string& run_dir);
  // Blocks until the runtime's process_ends passes `ends` or `seconds` pass; true if it did.
  bool wait_for_end(Runtime& runtime, uint64_t ends, uint32_t seconds);
  nlohmann::json control(Runtime& runtime, const nlohmann::json& request, int reply_seconds = 10);
  // Records the domain's new state; when it differs from the old one, the event readers are
  // told (the event is the state's name, with `details`).
  void change_state(uint32_t id, const std::string& state, nlohmann::json details = nlohmann::json::object());
  void publish(const std::string& event, uint32_t id, const std::string& name,
               nlohmann::json details = nlohmann::json::object());
  std::string log_path(const std::string& name) const;
  std::string run_dir_of(uint32_t id) const;  // the domain's VMM files: sockets, config, exit file
  // The domain's keys in the store: made on create, kept as it changes, removed with it. A
  // store that cannot be written (its file) is logged, never a reason for a lifecycle
  // operation to fail.
  void store_domain(const DomainRecord& record);
  void store_write(uint32_t id, const std::string& key, const std::string& value);
  void store_forget(uint32_t id, const std::string& uuid);
  // At start: the keys of domains the registry no longer has (a daemon that stopped between
  // removing a domain and its keys) go.
  void forget_stored_domains_not_in_registry();
  // Changes the domain's recorded config (validated), one change at a time.
  void update_config(uint32_t id, const std::function<void(config::DomainConfig&)>& change);
  // The VMM's disks and NICs and their states ("attached", "detaching"), by their VMM ids.
  std::map<std::string, std::string> vmm_devices(Runtime& runtime);
  // The domain's config with vmm_devices(): empty for a domain without a VMM, nullopt (logged)
  // when its VMM does not answer.
  std::pair<config::DomainConfig, std::optional<std::map<std::string, std::string>>> config_and_device_states(
      Runtime& runtime);
  // Asks the VMM to take device `vmm_id` away, lets go of the domain's `operation` lock, and
  // waits until the device has gone (forget_device).
  void detach_device(Runtime& runtime, std::unique_lock<std::mutex>& operation, const std::string& what,
                     const std::string& vmm_id, bool force, uint32_t wait_seconds);
  // The device with VMM id `vmm_id` (a vdev, or vif<devid>) has left the domain: it goes from
  // the config and the store, its TAP goes, "device-detached" is published. Nothing happens
  // when the config has no such device (it went already).
  void forget_device(uint32_t id, const std::string& vmm_id, const std::string& how);
  void store_device(uint32_t id, const std::string& key, const std::vector<std::pair<std::string, std::string>>& values);
  // A domain with vsock reaches its keys from inside (StoreGuestServer); logged when it cannot.
  void serve_store_to_guest(uint32_t id, const config::DomainConfig& config, const std::string& run_dir);

  Registry& registry_;
  Store& store_;
  const DaemonPaths paths_;
  EventBus events_;
  std::mutex state_mutex_;  // change_state's read, write and publish as one step
  std::mutex config_mutex_;  // update_config's read, change and write as one step
  std::mutex mutex_;  // runtimes_ and every Runtime's fields but `operation`
  std::condition_variable changed_;
  std::map<uint32_t, std::shared_ptr<Runtime>> runtimes_;
  bool stopping_ = false;  // being destroyed: no more settling
  size_t settling_ = 0;    // settling threads still running (the destructor waits for them)
  UniqueFd epoll_;
  UniqueFd wake_;
  std::thread watcher_;
  StoreGuestServer store_guests_{store_};
  std::string migration_token_;
  VmmEvents vmm_events_;  // last: its thread, which calls on_domain_event, ends first
};

}  // namespace kdom::toolstack
