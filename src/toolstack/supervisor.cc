// Supervisor: VMM processes started, watched, re-adopted and settled.
#include "toolstack/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <fstream>
#include <random>
#include <sstream>

#include "base/error.h"
#include "base/eventfd.h"
#include "base/log.h"
#include "toolstack/host_threads.h"
#include "toolstack/open_file_position.h"
#include "toolstack/tap_bridge.h"
#include "vmm/control_client.h"
#include "vmm/vm_config_json.h"

namespace kdom::toolstack {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_send_signal(int pidfd, int signal) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Fields 14, 15 (utime, stime) and 22 (starttime) of /proc/PID/stat; nullopt when gone.
struct ProcessTimes {
  uint64_t cpu_ticks = 0;
  uint64_t start_ticks = 0;
};
std::optional<ProcessTimes> process_times(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(file, text)) return std::nullopt;
  const size_t paren = text.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(paren + 2));
  std::vector<std::string> values;
  for (std::string value; fields >> value;) values.push_back(value);
  // values[0] is field 3 (state)
  if (values.size() < 20 || values[0] == "Z") return std::nullopt;
  return ProcessTimes{std::stoull(values[11]) + std::stoull(values[12]), std::stoull(values[19])};
}

// The VMM's account of why it stopped (its --exit-file), or nullopt.
std::optional<json> read_exit_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  json parsed = json::parse(file, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
  return parsed;
}

std::string last_line_of(const std::string& path) {
  std::ifstream file(path);
  std::string line, last;
  while (std::getline(file, line))
    if (!line.empty()) last = line;
  return last;
}


bool is_domain_id(const std::string& dom) {
  return !dom.empty() && dom.size() <= 9 && dom.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

std::string make_uuid() {
  std::random_device random;
  uint8_t bytes[16];
  for (auto& byte : bytes) byte = static_cast<uint8_t>(random());
  bytes[6] = (bytes[6] & 0x0f) | 0x40;  // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80;  // RFC 4122 variant
  char text[37];
  std::snprintf(text, sizeof(text), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
                bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10],
                bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
  return text;
}

std::vector<std::pair<std::string, std::string>> disk_keys(const config::DiskSpec& disk) {
  return {{"target", disk.target}, {"vdev", disk.vdev}, {"mode", disk.read_only ? "r" : "w"}, {"state", "connected"}};
}

std::vector<std::pair<std::string, std::string>> vif_keys(const config::VifSpec& vif) {
  return {{"mac", vif.mac.value_or("")}, {"bridge", vif.bridge}, {"state", "connected"}};
}

std::string tap_name(uint32_t domid, const config::VifSpec& vif) {
  return vif.bridge.empty() ? vif.tap : "kdom" + std::to_string(domid) + "." + std::to_string(vif.devid);
}

vmm::DiskConfig vmm_disk(const config::DiskSpec& spec) {
  vmm::DiskConfig disk;
  disk.path = spec.target;
  disk.read_only = spec.read_only;
  disk.shared = spec.shared;
  disk.id = spec.vdev;
  return disk;
}

std::array<uint8_t, 6> vif_mac(const config::VifSpec& vif) {
  if (!vif.mac) throw Error("vif " + std::to_string(vif.devid) + " has no MAC");
  return vmm::parse_mac(*vif.mac);
}

vmm::NetConfig vmm_net(uint32_t domid, const config::VifSpec& vif) {
  vmm::NetConfig net;
  net.tap = tap_name(domid, vif);
  if (vif.mac) net.mac = vmm::parse_mac(*vif.mac);
  net.id = "vif" + std::to_string(vif.devid);
  net.rate_limit.bytes_per_second = vif.rate_bytes_per_second;
  return net;
}

vmm::VmConfig vm_config_for(const config::DomainConfig& config, const std::string& run_dir, uint32_t domid) {
  vmm::VmConfig vm;
  vm.kernel_path = config.kernel;
  if (!config.ramdisk.empty()) vm.initrd_path = config.ramdisk;
  vm.cmdline = config.cmdline;
  vm.memory_mib = config.memory_mib;
  vm.vcpus = config.vcpus;
  vm.console = {vmm::ConsoleKind::kSocket, run_dir + "/console.sock"};
  vm.control_path = run_dir + "/control.sock";
  for (const auto& disk : config.disks) vm.disks.push_back(vmm_disk(disk));
  for (const auto& vif : config.vifs) vm.nets.push_back(vmm_net(domid, vif));
  vm.entropy = config.rng;
  // Every domain has a balloon, so mem-set works on any guest with the driver (xl's model).
  vm.balloon = vmm::BalloonConfig{};
  vm.balloon->stats_seconds = static_cast<uint32_t>(config.balloon_stats_seconds.value_or(0));
  if (config.vsock_cid) vm.vsock = vmm::VsockConfig{*config.vsock_cid, run_dir + "/vsock.sock", ""};
  return vm;
}

Supervisor::Supervisor(Registry& registry, Store& store, DaemonPaths paths)
    : registry_(registry),
      store_(store),
      paths_(std::move(paths)),
      epoll_(check_syscall(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
      wake_(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")),
      vmm_events_([this](uint32_t id, const json& event) { on_domain_event(id, event); }) {
  fs::create_directories(paths_.run_dir + "/domains");
  fs::create_directories(paths_.log_dir);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = UINT64_MAX;
  check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &event), "epoll_ctl");
  watcher_ = std::thread([this] { watcher_loop(); });
}

Supervisor::~Supervisor() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;  // a VMM that ends from now on is settled by the next daemon
  }
  signal_eventfd(wake_.get());
  watcher_.join();
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return settling_ == 0; });
}

void Supervisor::require_live_vmm(const std::string& dom, const std::string& state, const char* wanted) {
  if (state != "running" && state != "paused")
    throw ConflictError("domain " + dom + " is " + state + ", not " + wanted);
}

void Supervisor::update_config(uint32_t id, const std::function<void(config::DomainConfig&)>& change) {
  std::lock_guard lock(config_mutex_);
  config::DomainConfig config = config::domain_config_from_json(record_of(id).config);
  change(config);
  config::validate(config);
  registry_.set_config(id, config::to_json(config));
}

std::string Supervisor::run_dir_of(uint32_t id) const { return paths_.run_dir + "/domains/" + std::to_string(id); }

std::string Supervisor::log_path(const std::string& name) const { return paths_.log_dir + "/" + name + ".log"; }

DomainRecord Supervisor::record_of(uint32_t id) {
  auto record = registry_.find(id);
  if (!record) throw NotFoundError("no domain with id " + std::to_string(id));
  return *record;
}

std::shared_ptr<Supervisor::Runtime> Supervisor::runtime_of(const std::string& dom) {
  std::optional<DomainRecord> record =
      is_domain_id(dom) ? registry_.find(static_cast<uint32_t>(std::stoul(dom))) : registry_.find_by_name(dom);
  if (!record) {
    if (dom == "0" || dom == "Domain-0") throw Error("Domain-0 is the host itself: it cannot be changed this way");
    throw NotFoundError("no domain '" + dom + "'");
  }
  std::lock_guard lock(mutex_);
  auto it = runtimes_.find(record->id);
  if (it == runtimes_.end() || it->second->gone) throw NotFoundError("no domain '" + dom + "'");
  return it->second;
}

json Supervisor::describe(const DomainRecord& record) {
  json info = {{"id", record.id},       {"name", record.name},   {"uuid", record.uuid},
               {"state", record.state}, {"start_time", 0},       {"uptime_s", 0.0},
               {"cpu_time_s", 0.0},     {"pid", 0},              {"last_exit", record.last_exit},
               {"config", record.config}};
  info["memory_mib"] = record.config.value("memory_mib", 0);
  info["target_mib"] = record.target_mib ? record.target_mib : info["memory_mib"].get<uint64_t>();
  info["vcpus"] = record.config.value("vcpus", 1);
  uint64_t balloon_mib = 0;
  pid_t restoring_pid = 0;
  std::string restoring_from;
  {
    std::lock_guard lock(mutex_);
    if (auto it = runtimes_.find(record.id); it != runtimes_.end()) {
      balloon_mib = it->second->balloon_mib;
      if (!it->second->job.is_null()) info["job"] = it->second->job;
      restoring_pid = it->second->restoring_pid;
      restoring_from = it->second->restoring_from;
    }
  }
  if (restoring_pid > 0) {
    // The VMM reads the snapshot from start to end: how far it has come is its file offset.
    // (Its descriptor names the file by its canonical path.)
    std::error_code size_error, path_error;
    const auto size = fs::file_size(restoring_from, size_error);
    const auto canonical = fs::weakly_canonical(restoring_from, path_error);
    info["job"] = {{"kind", "restore"},
                   {"path", restoring_from},
                   {"done_bytes", path_error ? 0 : open_file_position(restoring_pid, canonical).value_or(0)},
                   {"total_bytes", size_error ? 0 : size}};
  }
  const uint64_t memory_mib = info["memory_mib"].get<uint64_t>();
  info["actual_mib"] = memory_mib > balloon_mib ? memory_mib - balloon_mib : 0;
  if (record.pid > 0) {
    if (auto times = process_times(record.pid); times && times->start_ticks == record.pid_start_ticks) {
      info["pid"] = record.pid;
      info["start_time"] = record.start_time;
      info["uptime_s"] = static_cast<double>(std::max<int64_t>(0, now_seconds() - record.start_time));
      info["cpu_time_s"] = static_cast<double>(times->cpu_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  return info;
}

size_t Supervisor::domain_count() { return registry_.all().size(); }

json Supervisor::list() {
  json domains = json::array();
  for (const auto& record : registry_.all()) domains.push_back(describe(record));
  return {{"domains", domains}};
}

json Supervisor::info(const std::string& dom) { return describe(record_of(runtime_of(dom)->id)); }

json Supervisor::create(const config::DomainConfig& requested, bool paused) {
  config::DomainConfig config = requested;
  if (config.uuid.empty()) config.uuid = make_uuid();
  config::assign_device_names(config);
  return launch(config, paused, "");
}

void Supervisor::check_launchable(const config::DomainConfig& config) {
  config::validate(config);
  // Bad input is found before anything is recorded: the VMM would say so too, but later.
  for (const auto& [what, path] : {std::pair<std::string, std::string>{"kernel", config.kernel},
                                   {"ramdisk", config.ramdisk}})
    if (!path.empty() && !fs::is_regular_file(path)) throw Error(what + " '" + path + "' does not exist");
  for (const auto& disk : config.disks)
    if (!fs::exists(disk.target)) throw Error("disk '" + disk.target + "' does not exist");
}

json Supervisor::launch(config::DomainConfig config, bool paused, const std::string& restore_from,
                        const Incoming* incoming) {
  check_launchable(config);
  DomainRecord record;
  record.name = config.name;
  record.uuid = config.uuid;
  record.config = config::to_json(config);
  record.state = incoming ? "incoming" : "starting";
  registry_.add(record);  // intent first: whoever lists the host meanwhile sees it starting
  publish("created", record.id, record.name);
  store_domain(record);

  auto runtime = std::make_shared<Runtime>();
  runtime->id = record.id;
  runtime->run_dir = run_dir_of(record.id);
  std::unique_lock operation(runtime->operation);
  {
    std::lock_guard lock(mutex_);
    runtimes_[record.id] = runtime;
  }
  try {
    fs::create_directories(runtime->run_dir);
    for (const auto& vif : config.vifs)
      if (!vif.bridge.empty()) create_bridged_tap(tap_name(record.id, vif), vif.bridge, vif_mac(vif));
    runtime->console = std::make_shared<ConsoleHub>(runtime->run_dir + "/console.sock",
                                                    log_path(incoming ? incoming->log_name : record.name));
    serve_store_to_guest(record.id, config, runtime->run_dir);
    start_vmm(*runtime, record, paused, restore_from, incoming);
  } catch (...) {
    // Nothing half-made stays behind: no process, no record, no run directory, no TAP.
    if (runtime->pidfd.valid()) {
      pidfd_send_signal(runtime->pidfd.get(), SIGKILL);
      ::waitpid(runtime->pid, nullptr, 0);
    }
    remove_domain(*runtime);
    throw;
  }
  return describe(record_of(record.id));
}

void Supervisor::clean_run_dir(const std::string& run_dir) {
  for (const char* name : {"control.sock", "console.sock", "vsock.sock", "exit.json", "vm.json"})
    ::unlink((run_dir + "/" + name).c_str());
}

void Supervisor::start_vmm(Runtime& runtime, const DomainRecord& record, bool paused,
                           const std::string& restore_from, const Incoming* incoming) {
  const int incoming_fd = incoming ? incoming->fd : -1;
  const config::DomainConfig config = config::domain_config_from_json(record.config);
  clean_run_dir(runtime.run_dir);
  {
    std::lock_guard lock(mutex_);
    runtime.stopping.reset();
    runtime.balloon_mib = 0;  // a new VMM starts with an empty balloon
  }
  const std::string config_path = runtime.run_dir + "/vm.json";
  {
    std::ofstream file(config_path);
    file << vmm::to_json(vm_config_for(config, runtime.run_dir, record.id)).dump(2) << "\n";
    if (!file) throw Error("cannot write " + config_path);
  }
  const std::string exit_path = runtime.run_dir + "/exit.json";
  const std::string log = runtime.run_dir + "/vmm.log";
  std::vector<std::string> words = {paths_.vmm_binary, "run",       "--config",   config_path,
                                    "--ready-fd",      "3",         "--exit-file", exit_path};
  if (!restore_from.empty()) {
    words.insert(words.end(), {"--restore", restore_from});
    if (paused) words.push_back("--paused");
  }
  // An incoming migration: the VMM reads the stream from the connection, given to it as fd 4;
  // unless paused, it takes the disks' locks (the source let go of them) and runs at its end.
  if (incoming) {
    words.insert(words.end(), {"--incoming-fd", "4"});
    if (paused) words.push_back("--paused");
  }
  std::vector<char*> argv;
  for (auto& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);

  int ready_pipe[2];
  check_syscall(::pipe2(ready_pipe, O_CLOEXEC), "pipe2");
  UniqueFd ready_read(ready_pipe[0]), ready_write(ready_pipe[1]);
  UniqueFd log_fd(check_syscall(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640), "open " + log));
  UniqueFd null_fd(check_syscall(::open("/dev/null", O_RDONLY | O_CLOEXEC), "open /dev/null"));

  const pid_t pid = ::fork();
  if (pid < 0) throw SystemError("fork", errno);
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec: this process has other threads' locks.
    ::setsid();  // a session of its own: no terminal or daemon signal reaches it
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Out of the way of 0-4 first: the descriptors below may be any of them.
    const int incoming = incoming_fd >= 0 ? ::fcntl(incoming_fd, F_DUPFD, 10) : -1;
    ::dup2(null_fd.get(), 0);
    ::dup2(log_fd.get(), 1);
    ::dup2(log_fd.get(), 2);
    ::dup2(ready_write.get(), 3);
    if (incoming >= 0) ::dup2(incoming, 4);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ready_write.reset();
  const auto restoring = [&](pid_t restoring_pid) {
    std::lock_guard lock(mutex_);
    runtime.restoring_pid = restoring_pid;
    runtime.restoring_from = restoring_pid > 0 ? restore_from : "";
  };
  if (!restore_from.empty()) restoring(pid);
  struct RestoreEnds {
    std::function<void()> end;
    ~RestoreEnds() { end(); }
  } restore_ends{[&] { restoring(0); }};
  UniqueFd pidfd(pidfd_open(pid));
  if (!pidfd.valid()) throw SystemError("pidfd_open", errno);
  const int64_t started = now_seconds();

  pollfd ready{ready_read.get(), POLLIN, 0};
  int polled;
  // An incoming domain is ready once the source has sent all of it: as long as its pre-copy
  // takes (a source that goes away ends the VMM, and so this wait, at once).
  const int ready_seconds = incoming_fd >= 0 ? kIncomingReadySeconds : kReadySeconds;
  do polled = ::poll(&ready, 1, ready_seconds * 1000);
  while (polled < 0 && errno == EINTR);
  char answer[16] = {};
  const ssize_t n = polled > 0 ? ::read(ready_read.get(), answer, sizeof(answer) - 1) : 0;
  if (n <= 0 || std::string(answer) != "ready\n") {
    pidfd_send_signal(pidfd.get(), SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::string reason;
    if (auto exit = read_exit_file(exit_path)) reason = exit->value("message", "");
    if (reason.empty()) reason = last_line_of(log);
    if (reason.empty())
      reason = polled == 0 ? "it did not say it was ready within " + std::to_string(ready_seconds) + " s"
                           : "its process ended at once";
    throw Error("domain '" + record.name + "' did not " +
                (incoming_fd >= 0 ? "arrive" : restore_from.empty() ? "start" : "restore") + ": " +
                reason);
  }
  // The migration's source waits on this (the guest runs here now): before the bookkeeping.
  if (incoming && incoming->on_ready) incoming->on_ready(runtime.id);
  const auto times = process_times(pid);
  registry_.set_process(runtime.id, pid, times ? times->start_ticks : 0, started);
  {
    std::lock_guard lock(mutex_);
    runtime.pid = pid;
    runtime.pidfd = std::move(pidfd);
    runtime.is_child = true;
  }
  listen_to_events(runtime, record.name);
  if (paused && !incoming) control(runtime, {{"op", "pause"}});  // (an incoming one starts paused)
  change_state(runtime.id, paused ? "paused" : "running");
  watch(runtime);
}

void Supervisor::watch(Runtime& runtime) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = runtime.id;
  std::lock_guard lock(mutex_);
  check_syscall(epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, runtime.pidfd.get(), &event), "epoll_ctl");
}

void Supervisor::listen_to_events(Runtime& runtime, const std::string& name) {
  try {
    vmm_events_.subscribe(runtime.id, runtime.run_dir + "/control.sock");
  } catch (const std::exception& error) {
    log_line("domain " + std::to_string(runtime.id) + " '" + name + "': no events from its VMM (" + error.what() +
             "); its exit file will say why it stops");
  }
}

void Supervisor::on_domain_event(uint32_t id, const json& event) {
  const auto name = event.find("event");
  if (name == event.end() || !name->is_string()) return;
  std::shared_ptr<Runtime> runtime;
  {
    std::lock_guard lock(mutex_);
    auto it = runtimes_.find(id);
    if (it == runtimes_.end()) return;
    runtime = it->second;
  }
  if (*name == "stopping") {
    Runtime::StopReport report{event.value("reason", "crash"), event.value("message", "")};
    std::lock_guard lock(mutex_);
    runtime->stopping = std::move(report);
  } else if (*name == "balloon-target-reached") {
    const auto actual = event.find("actual_mib");
    if (actual == event.end() || !actual->is_number_unsigned()) return;
    {
      std::lock_guard lock(mutex_);
      runtime->balloon_mib = actual->get<uint64_t>();
    }
    if (const auto record = registry_.find(id)) {
      const uint64_t memory = record->config.value("memory_mib", uint64_t{0});
      const uint64_t balloon = actual->get<uint64_t>();
      publish("balloon-target-reached", id, record->name,
              {{"actual_mib", memory > balloon ? memory - balloon : 0},
               {"target_mib", record->target_mib ? record->target_mib : memory}});
    }
  } else if (*name == "save-progress") {
    const auto done = event.find("done_bytes");
    const auto total = event.find("total_bytes");
    if (done == event.end() || total == event.end() || !done->is_number_unsigned() || !total->is_number_unsigned())
      return;
    std::lock_guard lock(mutex_);
    if (!runtime->job.is_null()) runtime->job = {{"kind", "save"}, {"done_bytes", *done}, {"total_bytes", *total}};
  } else if (*name == "migrate-progress") {
    std::lock_guard lock(mutex_);
    if (!runtime->job.is_object() || runtime->job.value("kind", "") != "migrate") return;
    for (const char* key : {"round", "phase", "sent_bytes", "total_bytes", "remaining_bytes", "rate_bytes_per_s",
                            "dirty_bytes_per_s", "expected_downtime_ms", "throttle_percent"})
      if (const auto it = event.find(key); it != event.end() && (it->is_number() || it->is_string()))
        runtime->job[key] = *it;
  } else if (*name == "paused" || *name == "unpaused") {
    // Confirms what pause and unpause recorded, and records a pause made by someone else on
    // the control socket. Settling reads every event before it changes the state.
    const std::string state = *name == "paused" ? "paused" : "running";
    const auto record = registry_.find(id);
    if (record && (record->state == "running" || record->state == "paused")) change_state(id, state);
  } else if (*name == "device-detached") {
    // As asked (block-detach), forced, or the guest's own eject: the device is gone.
    if (event.contains("id") && event["id"].is_string())
      forget_device(id, event["id"].get<std::string>(), event.value("by", "guest"));
  } else if (*name == "overflow") {
    log_line("domain " + std::to_string(id) + ": kdomd fell behind its VMM's events: " + event.value("message", ""));
  }
}

void Supervisor::watcher_loop() {
  for (;;) {
    epoll_event events[16];
    const int count = epoll_wait(epoll_.get(), events, 16, -1);
    if (count < 0) {
      if (errno == EINTR) continue;
      log_line(std::string("supervisor: epoll_wait failed: ") + std::strerror(errno));
      return;
    }
    for (int i = 0; i < count; ++i) {
      if (events[i].data.u64 == UINT64_MAX) return;
      const auto id = static_cast<uint32_t>(events[i].data.u64);
      {
        std::lock_guard lock(mutex_);
        auto it = runtimes_.find(id);
        if (it != runtimes_.end() && it->second->pidfd.valid())
          epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second->pidfd.get(), nullptr);
      }
      // Settling may start a new VMM and wait for it: never in this thread.
      {
        std::lock_guard lock(mutex_);
        if (stopping_) continue;
        ++settling_;
      }
      std::thread([this, id] {
        on_vmm_exit(id);
        std::lock_guard lock(mutex_);
        --settling_;
        changed_.notify_all();
      }).detach();
    }
  }
}

void Supervisor::on_vmm_exit(uint32_t id) {
  std::shared_ptr<Runtime> runtime;
  {
    std::lock_guard lock(mutex_);
    auto it = runtimes_.find(id);
    if (stopping_ || it == runtimes_.end()) return;
    runtime = it->second;
  }
  std::lock_guard operation(runtime->operation);
  pid_t pid;
  bool is_child, destroying;
  {
    std::lock_guard lock(mutex_);
    pid = runtime->pid;
    is_child = runtime->is_child;
    destroying = runtime->destroying;
  }
  int status = 0;
  bool have_status = false;
  if (is_child && pid > 0) have_status = ::waitpid(pid, &status, 0) == pid;
  // What it sent before it ended comes first: its `stopping` event says why, if it got out.
  vmm_events_.finish(id);
  std::optional<Runtime::StopReport> said;
  {
    std::lock_guard lock(mutex_);
    said = std::move(runtime->stopping);
    runtime->stopping.reset();
    runtime->balloon_mib = 0;
  }
  std::string reason = "crash", message = "its VMM process ended without saying why";
  if (said) {
    reason = said->reason;
    if (!said->message.empty()) message = said->message;
  } else if (auto exit = read_exit_file(runtime->run_dir + "/exit.json")) {
    reason = exit->value("reason", "crash");
    message = exit->value("message", message);
  } else if (have_status && WIFSIGNALED(status)) {
    message = std::string("its VMM process was killed by SIG") + sigabbrev_np(WTERMSIG(status));
  } else if (have_status && WIFEXITED(status)) {
    message = "its VMM process exited with status " + std::to_string(WEXITSTATUS(status)) + " and no exit file";
  }
  {
    std::lock_guard lock(mutex_);
    runtime->pid = 0;
    runtime->pidfd.reset();
  }
  if (destroying) {
    remove_domain(*runtime);
    return;
  }
  settle(*runtime, reason, message);
}

void Supervisor::settle(Runtime& runtime, const std::string& reason, const std::string& message) {
  DomainRecord record = record_of(runtime.id);
  log_line("domain " + std::to_string(runtime.id) + " '" + record.name + "': " + message);
  registry_.set_process(runtime.id, 0, 0, 0);
  registry_.set_last_exit(runtime.id, message);
  const config::DomainConfig config = config::domain_config_from_json(record.config);
  config::LifecycleAction action = config.on_crash;
  std::string stopped_state = "crashed";
  if (reason == "poweroff" || reason == "debug-exit") {
    action = config.on_poweroff;
    stopped_state = "shutdown";
  } else if (reason == "reboot") {
    action = config.on_reboot;
    stopped_state = "shutdown";
  }
  publish(stopped_state, runtime.id, record.name,
          {{"reason", reason}, {"message", message}, {"action", config::lifecycle_action_name(action)}});
  auto finish = [&] {
    std::lock_guard lock(mutex_);
    ++runtime.process_ends;
    changed_.notify_all();
  };
  if (action == config::LifecycleAction::kRestart || action == config::LifecycleAction::kRenameRestart) {
    const int64_t now = now_seconds();
    std::erase_if(runtime.restart_times, [&](int64_t t) { return now - t > kRestartWindowSeconds; });
    if (static_cast<int>(runtime.restart_times.size()) >= kMaxRestarts) {
      registry_.set_last_exit(runtime.id, message + "; not restarted: it stopped " + std::to_string(kMaxRestarts) +
                                              " times within " + std::to_string(kRestartWindowSeconds) + " s");
      registry_.set_state(runtime.id, "crashed");
      publish("crashed", runtime.id, record.name,
                   {{"reason", "restart-limit"},
                    {"message", "not restarted: it stopped " + std::to_string(kMaxRestarts) + " times within " +
                                    std::to_string(kRestartWindowSeconds) + " s"}});
      finish();
      return;
    }
    runtime.restart_times.push_back(now);
  }
  switch (action) {
    case config::LifecycleAction::kDestroy:
      remove_domain(runtime);
      return;
    case config::LifecycleAction::kPreserve:
      registry_.set_state(runtime.id, stopped_state);
      clean_run_dir(runtime.run_dir);
      finish();
      return;
    case config::LifecycleAction::kRenameRestart: {
      // As xl: the stopped domain stays, under a new name; a new one starts with the old name.
      registry_.rename(runtime.id, record.name + "--" + std::to_string(runtime.id));
      publish("renamed", runtime.id, record.name + "--" + std::to_string(runtime.id), {{"old_name", record.name}});
      registry_.set_state(runtime.id, stopped_state);
      clean_run_dir(runtime.run_dir);
      finish();
      try {
        create(config, false);
      } catch (const std::exception& error) {
        log_line("domain '" + record.name + "': rename-restart failed: " + error.what());
      }
      return;
    }
    case config::LifecycleAction::kRestart:
      try {
        registry_.set_state(runtime.id, "starting");
        start_vmm(runtime, record, false);
      } catch (const std::exception& error) {
        registry_.set_last_exit(runtime.id, std::string("restart failed: ") + error.what());
        change_state(runtime.id, "crashed", {{"reason", "restart-failed"}, {"message", error.what()}});
      }
      finish();
      return;
  }
}

void Supervisor::remove_domain(Runtime& runtime) {
  vmm_events_.finish(runtime.id);
  store_guests_.stop(runtime.id);
  std::shared_ptr<ConsoleHub> console;
  {
    std::lock_guard lock(mutex_);
    console = std::move(runtime.console);
    runtime.gone = true;
  }
  if (console) console->close();  // ends its followers; stops reading before the sockets go
  const config::DomainConfig config = [&] {
    auto record = registry_.find(runtime.id);
    return record ? config::domain_config_from_json(record->config) : config::DomainConfig{};
  }();
  for (const auto& vif : config.vifs)
    if (!vif.bridge.empty()) remove_tap(tap_name(runtime.id, vif));
  std::error_code ignored;
  fs::remove_all(runtime.run_dir, ignored);
  try {
    if (auto record = registry_.find(runtime.id)) {
      publish("destroyed", runtime.id, record->name);
      store_forget(runtime.id, record->uuid);
    }
    registry_.remove(runtime.id);
  } catch (const std::exception& error) {
    log_line(std::string("supervisor: ") + error.what());
  }
  std::lock_guard lock(mutex_);
  runtimes_.erase(runtime.id);
  ++runtime.process_ends;
  changed_.notify_all();
}

bool Supervisor::wait_for_end(Runtime& runtime, uint64_t ends, uint32_t seconds) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, std::chrono::seconds(seconds), [&] { return runtime.process_ends > ends; });
}

json Supervisor::control(Runtime& runtime, const json& request, int reply_seconds) {
  return vmm::control_request(runtime.run_dir + "/control.sock", request, reply_seconds);
}

void Supervisor::change_state(uint32_t id, const std::string& state, json details) {
  std::lock_guard lock(state_mutex_);
  const auto record = registry_.find(id);
  if (!record) return;
  registry_.set_state(id, state);
  if (record->state == state) return;
  store_write(id, "state", state);
  publish(state, id, record->name, std::move(details));
}

void Supervisor::store_domain(const DomainRecord& record) {
  const std::string id = std::to_string(record.id);
  const std::string home = "/local/domain/" + id;
  const config::DomainConfig config = config::domain_config_from_json(record.config);
  try {
    // Written by kdomd, read by the guest; its own keys go under data/ (as xenstore's).
    const StorePermissions guest_reads = StorePermissions::parse("n0 r" + id);
    std::vector<std::pair<std::string, std::string>> keys = {
        {"name", record.name},
        {"domid", id},
        {"vm", "/vm/" + record.uuid},
        {"state", record.state},
        {"memory/static-max", std::to_string(config.memory_mib * 1024)},
        {"memory/target", std::to_string((record.target_mib ? record.target_mib : config.memory_mib) * 1024)},
        {"cpu/count", std::to_string(config.vcpus)},
    };
    for (const auto& disk : config.disks)
      for (const auto& [key, value] : disk_keys(disk)) keys.push_back({"device/vbd/" + disk.vdev + "/" + key, value});
    for (const auto& vif : config.vifs)
      for (const auto& [key, value] : vif_keys(vif))
        keys.push_back({"device/vif/" + std::to_string(vif.devid) + "/" + key, value});
    const std::string vm = "/vm/" + record.uuid;
    // One transaction: one write to the registry's file per domain, not one per key. Two
    // first creates may both make /local: the loser starts again.
    for (int attempt = 1;; ++attempt) {
      const uint64_t t = store_.begin(Store::kHost);
      try {
        store_.write(Store::kHost, home, "", t);
        store_.set_permissions(Store::kHost, home, guest_reads, t);
        for (const auto& [key, value] : keys) store_.write(Store::kHost, home + "/" + key, value, t);
        store_.write(Store::kHost, home + "/data", "", t);
        store_.set_permissions(Store::kHost, home + "/data", StorePermissions::parse("n" + id), t);
        store_.write(Store::kHost, vm + "/name", record.name, t);
        store_.write(Store::kHost, vm + "/uuid", record.uuid, t);
        store_.set_permissions(Store::kHost, vm, guest_reads, t);
      } catch (...) {
        store_.abort(Store::kHost, t);
        throw;
      }
      try {
        store_.commit(Store::kHost, t);
        break;
      } catch (const StoreConflictError&) {
        if (attempt == 3) throw;
      }
    }
  } catch (const std::exception& error) {
    log_line("domain " + id + " '" + record.name + "': cannot write its keys in the store: " + error.what());
  }
}

void Supervisor::store_write(uint32_t id, const std::string& key, const std::string& value) {
  try {
    store_.write(Store::kHost, "/local/domain/" + std::to_string(id) + "/" + key, value);
  } catch (const std::exception& error) {
    log_line("domain " + std::to_string(id) + ": cannot write " + key + " in the store: " + error.what());
  }
}

void Supervisor::store_forget(uint32_t id, const std::string& uuid) {
  for (const std::string& path : {"/local/domain/" + std::to_string(id), "/vm/" + uuid}) {
    try {
      if (store_.read(Store::kHost, path)) store_.remove(Store::kHost, path);
    } catch (const std::exception& error) {
      log_line("domain " + std::to_string(id) + ": cannot remove " + path + " from the store: " + error.what());
    }
  }
}

void Supervisor::publish(const std::string& event, uint32_t id, const std::string& name, json details) {
  details["id"] = id;
  details["name"] = name;
  events_.publish(event, std::move(details));
}

uint32_t Supervisor::destroy(const std::string& dom) {
  auto runtime = runtime_of(dom);
  std::unique_lock operation(runtime->operation);
  uint64_t ends;
  bool killed = false;
  {
    std::lock_guard lock(mutex_);
    ends = runtime->process_ends;
    if (runtime->pid > 0) {
      runtime->destroying = killed = true;
      pidfd_send_signal(runtime->pidfd.get(), SIGKILL);
    }
  }
  if (killed) {
    operation.unlock();  // the watcher settles it under the same lock
    if (!wait_for_end(*runtime, ends, 30)) throw TimeoutError("domain " + dom + " did not end within 30 s of SIGKILL");
  } else {
    remove_domain(*runtime);  // preserved, no process
  }
  return runtime->id;
}

json Supervisor::pause(const std::string& dom) {
  auto runtime = runtime_of(dom);
  std::lock_guard operation(runtime->operation);
  require_live_vmm(dom, record_of(runtime->id).state, "running");
  control(*runtime, {{"op", "pause"}});
  change_state(runtime->id, "paused");
  return describe(record_of(runtime->id));
}

json Supervisor::unpause(const std::string& dom) {
  auto runtime = runtime_of(dom);
  std::lock_guard operation(runtime->operation);
  require_live_vmm(dom, record_of(runtime->id).state, "paused");
  // A domain left paused by a migration that broke off may have let go of its disks: they
  // are taken back first (nothing when it holds them; an error naming the disk another holds).
  control(*runtime, {{"op", "disk-locks"}, {"hold", true}}, 60);
  control(*runtime, {{"op", "unpause"}});
  change_state(runtime->id, "running");
  return describe(record_of(runtime->id));
}

json Supervisor::shutdown(const std::string& dom, std::optional<uint32_t> wait_seconds) {
  auto runtime = runtime_of(dom);
  uint64_t ends;
  {
    std::lock_guard operation(runtime->operation);
    const std::string state = record_of(runtime->id).state;
    if (state != "running") throw ConflictError("domain " + dom + " is " + state + ", not running");
    {
      std::lock_guard lock(mutex_);
      ends = runtime->process_ends;
    }
    control(*runtime, {{"op", "power-button"}});
  }
  if (wait_seconds && !wait_for_end(*runtime, ends, *wait_seconds))
    throw TimeoutError("domain " + dom + " is still running after " + std::to_string(*wait_seconds) + " s");
  auto record = registry_.find(runtime->id);
  return {{"id", runtime->id}, {"state", record ? record->state : "destroyed"}};
}

json Supervisor::reboot(const std::string& dom) {
  auto runtime = runtime_of(dom);
  uint64_t ends;
  {
    std::lock_guard operation(runtime->operation);
    const std::string state = record_of(runtime->id).state;
    require_live_vmm(dom, state, "running");
    {
      std::lock_guard lock(mutex_);
      ends = runtime->process_ends;
    }
    control(*runtime, {{"op", "reboot"}});
  }
  if (!wait_for_end(*runtime, ends, kReadySeconds + 30))
    throw TimeoutError("domain " + dom + " did not come back from its reboot");
  auto record = registry_.find(runtime->id);
  if (!record) return {{"id", runtime->id}, {"state", "destroyed"}};
  return describe(*record);
}

json Supervisor::rename(const std::string& dom, const std::string& new_name) {
  auto runtime = runtime_of(dom);
  std::lock_guard operation(runtime->operation);
  DomainRecord record = record_of(runtime->id);
  config::DomainConfig config = config::domain_config_from_json(record.config);
  config.name = new_name;
  config::validate(config);  // the name's syntax
  registry_.rename(runtime->id, new_name);
  update_config(runtime->id, [&](config::DomainConfig& changed) { changed.name = new_name; });
  publish("renamed", runtime->id, new_name, {{"old_name", record.name}});
  store_write(runtime->id, "name", new_name);
  std::shared_ptr<ConsoleHub> console;
  {
    std::lock_guard lock(mutex_);
    console = runtime->console;
  }
  if (console) console->move_log(log_path(new_name));
  return describe(record_of(runtime->id));
}

json Supervisor::mem_set(const std::string& dom, uint64_t memory_mib) {
  auto runtime = runtime_of(dom);
  std::lock_guard operation(runtime->operation);
  DomainRecord record = record_of(runtime->id);
  require_live_vmm(dom, record.state, "running");
  const uint64_t memory = record.config.value("memory_mib", uint64_t{0});
  if (memory_mib == 0 || memory_mib > memory)
    throw Error("mem-set: " + std::to_string(memory_mib) + " MiB is not within 1.." + std::to_string(memory) +
                " MiB (the domain's memory)");
  control(*runtime, {{"op", "balloon-set"}, {"target_mib", memory - memory_mib}});
  registry_.set_target_mib(runtime->id, memory_mib);
  store_write(runtime->id, "memory/target", std::to_string(memory_mib * 1024));
  return describe(record_of(runtime->id));
}

json Supervisor::stats(const std::string& dom) { return stats_of(record_of(runtime_of(dom)->id)); }

json Supervisor::all_stats() {
  json all = json::array();
  for (const DomainRecord& record : registry_.all()) all.push_back(stats_of(record));
  return all;
}

json Supervisor::stats_of(const DomainRecord& record) {
  const json info = describe(record);
  json stats = {{"id", record.id},
                {"name", record.name},
                {"state", record.state},
                {"cpu_time_s", info["cpu_time_s"]},
                {"memory_mib", info["memory_mib"]},
                {"actual_mib", info["actual_mib"]},
                {"target_mib", info["target_mib"]},
                {"vcpu_count", info["vcpus"]},
                {"resident_bytes", 0},
                {"vcpus", json::array()},
                {"disks", json::array()},
                {"nets", json::array()}};
  const pid_t pid = info["pid"].get<pid_t>();
  if (pid <= 0) return stats;
  stats["resident_bytes"] = resident_bytes(pid);
  json vmm;
  try {
    vmm = vmm::control_request(run_dir_of(record.id) + "/control.sock",
                               {{"op", "stats"}});
  } catch (const std::exception&) {
    return stats;  // a VMM from before `stats`, or one stopping: the process figures stand
  }
  const int nr_cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_CONF));
  for (json vcpu : vmm.value("vcpus", json::array())) {
    const pid_t tid = vcpu.value("tid", 0);
    if (auto thread = thread_info(pid, tid)) {
      vcpu["cpu_time_s"] = thread->cpu_time_s;
      vcpu["cpu"] = thread->cpu;
      vcpu["affinity"] = cpu_list_text(thread->affinity, nr_cpus);
      vcpu["state"] = std::string(1, thread->state);
    }
    stats["vcpus"].push_back(vcpu);
  }
  for (const char* key : {"disks", "nets", "balloon"})
    if (vmm.contains(key)) stats[key] = vmm[key];
  return stats;
}

json Supervisor::vcpu_pin(const std::string& dom, uint32_t vcpu, const std::string& cpus) {
  auto runtime = runtime_of(dom);
  std::lock_guard operation(runtime->operation);
  const DomainRecord record = record_of(runtime->id);
  require_live_vmm(dom, record.state, "running");
  const std::vector<int> set = parse_cpu_list(cpus, static_cast<int>(sysconf(_SC_NPROCESSORS_CONF)));
  const json vmm = control(*runtime, {{"op", "stats"}});
  const json vcpus = vmm.value("vcpus", json::array());
  if (vcpu >= vcpus.size())
    throw Error("domain " + dom + " has vCPUs 0-" + std::to_string(vcpus.size() == 0 ? 0 : vcpus.size() - 1) +
                ", not " + std::to_string(vcpu));
  pin_thread(record.pid, vcpus[vcpu].value("tid", 0), set);
  return stats_of(record);
}

std::shared_ptr<ConsoleHub> Supervisor::console(const std::string& dom) {
  auto runtime = runtime_of(dom);
  std::lock_guard lock(mutex_);
  if (!runtime->console) throw NotFoundError("domain " + dom + " has no console");
  return runtime->console;
}

void Supervisor::recover() {
  forget_stored_domains_not_in_registry();
  for (const DomainRecord& record : registry_.all()) {
    // Recorded by a kdomd from before the store (schema 2): its keys are made now.
    if (!store_.read(Store::kHost, "/local/domain/" + std::to_string(record.id))) store_domain(record);
    auto runtime = std::make_shared<Runtime>();
    runtime->id = record.id;
    runtime->run_dir = run_dir_of(record.id);
    {
      std::lock_guard lock(mutex_);
      runtimes_[record.id] = runtime;
    }
    if ((record.state == "starting" || record.state == "incoming") && record.pid == 0) {
      // The daemon died while creating it: nothing half-created is kept.
      log_line("domain " + std::to_string(record.id) + " '" + record.name + "' was being created when kdomd stopped: removed");
      remove_domain(*runtime);
      continue;
    }
    runtime->console = std::make_shared<ConsoleHub>(runtime->run_dir + "/console.sock", log_path(record.name));
    if (record.pid == 0) continue;  // preserved after it stopped
    const auto times = process_times(record.pid);
    UniqueFd pidfd;
    if (times && times->start_ticks == record.pid_start_ticks) pidfd.reset(pidfd_open(record.pid));
    if (pidfd.valid()) {
      std::string state = record.state;
      try {
        const json status = control(*runtime, {{"op", "status"}});
        state = status.value("state", state);
      } catch (const std::exception& error) {
        log_line("domain " + std::to_string(record.id) + " '" + record.name + "': its VMM is alive but its control socket " +
                 "does not answer (" + error.what() + ")");
      }
      registry_.set_state(record.id, state);
      {
        std::lock_guard lock(mutex_);
        runtime->pid = record.pid;
        runtime->pidfd = std::move(pidfd);
      }
      watch(*runtime);
      serve_store_to_guest(record.id, config::domain_config_from_json(record.config), runtime->run_dir);
      // Subscribed before the balloon is asked, so no change after the answer is missed.
      listen_to_events(*runtime, record.name);
      try {
        const json balloon = control(*runtime, {{"op", "balloon-stats"}});
        std::lock_guard lock(mutex_);
        runtime->balloon_mib = balloon.value("actual_mib", uint64_t{0});
      } catch (const std::exception&) {
        // No balloon, or no answer (said above): its memory is taken as whole.
      }
      log_line("domain " + std::to_string(record.id) + " '" + record.name + "' re-adopted (pid " +
               std::to_string(record.pid) + ", " + state + ")");
      continue;
    }
    // It ended while no daemon watched it: say so and apply its action now.
    std::string reason = "crash", message = "its VMM process ended without saying why";
    if (auto exit = read_exit_file(runtime->run_dir + "/exit.json")) {
      reason = exit->value("reason", reason);
      message = exit->value("message", message);
    }
    std::lock_guard operation(runtime->operation);
    settle(*runtime, reason, message + " (while kdomd was not running)");
  }
}

void Supervisor::serve_store_to_guest(uint32_t id, const config::DomainConfig& config, const std::string& run_dir) {
  if (!config.vsock_cid) return;
  try {
    store_guests_.serve(id, run_dir + "/vsock.sock_" + std::to_string(StoreGuestServer::kVsockPort));
  } catch (const std::exception& error) {
    log_line("domain " + std::to_string(id) + ": its guest cannot reach the store: " + error.what());
  }
}

void Supervisor::forget_stored_domains_not_in_registry() {
  std::set<std::string> ids, uuids;
  for (const DomainRecord& record : registry_.all()) {
    ids.insert(std::to_string(record.id));
    uuids.insert(record.uuid);
  }
  for (const auto& [parent, known] : {std::pair{std::string("/local/domain"), &ids}, std::pair{std::string("/vm"), &uuids}}) {
    if (!store_.read(Store::kHost, parent)) continue;
    for (const std::string& child : store_.children(Store::kHost, parent)) {
      if (known->count(child)) continue;
      log_line("store: removing " + parent + "/" + child + ", left by a domain that is gone");
      store_.remove(Store::kHost, parent + "/" + child);
    }
  }
}

}  // namespace kdom::toolstack
