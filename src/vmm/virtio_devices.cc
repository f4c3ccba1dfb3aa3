// Building the domain's virtio devices and wiring their host sides to the event loop.
#include "vmm/virtio_devices.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <set>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "devices/net/tap.h"
#include "devices/virtio/block.h"
#include "devices/virtio/console.h"
#include "devices/virtio/entropy.h"
#include "devices/virtio/net.h"
#include "devices/virtio/vsock.h"

namespace kdom::vmm {

namespace {
constexpr uint64_t kMiB = 1024 * 1024;
}  // namespace

namespace {

// Hands out the ids of devices the user did not name: never one the user gave another device,
// and the same ids for the same config (a restore builds its devices from the saved config).
class IdChooser {
 public:
  explicit IdChooser(const VmConfig& config) {
    for (const auto& disk : config.disks) taken_.insert(disk.id);
    for (const auto& net : config.nets) taken_.insert(net.id);
    if (config.hvc) taken_.insert(config.hvc->id);
    if (config.vsock) taken_.insert(config.vsock->id);
    if (config.balloon) taken_.insert(config.balloon->id);
  }
  // The user's id when given, else `base` itself or with the lowest number that is free.
  std::string choose(const std::string& given, const std::string& base, bool always_numbered) {
    if (!given.empty()) return given;
    std::string id = always_numbered ? base + "0" : base;
    for (unsigned n = 1; taken_.count(id); ++n) id = base + std::to_string(n);
    taken_.insert(id);
    return id;
  }

 private:
  std::set<std::string> taken_;
};

}  // namespace

VirtioDevices::VirtioDevices(const VmConfig& config, EventLoop& events, bool lock_disks) : events_(events) {
  IdChooser ids(config);
  for (const auto& disk : config.disks) {
    Disk entry{disk, make_disk(disk, lock_disks)};
    entry.config.id = ids.choose(disk.id, "disk", true);
    devices_.push_back({entry.config.id, "disk", entry.device});
    disks_.push_back(std::move(entry));
  }
  if (config.entropy)
    devices_.push_back({ids.choose("", "entropy", false), "entropy", std::make_shared<devices::virtio::EntropyDevice>()});
  if (config.hvc) add_console(*config.hvc, ids.choose(config.hvc->id, "console", false));
  if (config.vsock) add_vsock(*config.vsock, ids.choose(config.vsock->id, "vsock", false));
  if (config.balloon) add_balloon(*config.balloon, ids.choose(config.balloon->id, "balloon", false));
  for (size_t index = 0; index < config.nets.size(); ++index) {
    Net entry{config.nets[index], nullptr};
    entry.config.id = ids.choose(config.nets[index].id, "net", true);
    entry.device = add_net(entry.config, static_cast<uint32_t>(index));
    devices_.push_back({entry.config.id, "net", entry.device});
    nets_.push_back(std::move(entry));
  }
}

std::shared_ptr<devices::virtio::BlockDevice> VirtioDevices::make_disk(const DiskConfig& disk, bool lock) {
  devices::virtio::BlockDiskConfig block{disk.path,       disk.read_only, disk.serial, disk.queues,
                                         disk.rate_limit, {std::chrono::microseconds(disk.poll_us)}, disk.shared,
                                         lock};
  return std::make_shared<devices::virtio::BlockDevice>(block);
}

size_t VirtioDevices::release_disk_locks() {
  // Every flush first: a disk let go before another's flush failed could be taken at once by
  // the other host, and could not be taken back.
  for (const auto& disk : disks_) {
    if (disk.config.read_only) continue;
    if (const int err = disk.device->disk().flush())
      throw SystemError("disk '" + disk.config.id + "' (" + disk.config.path + "): cannot flush it; every disk keeps its lock",
                        err);
  }
  for (const auto& disk : disks_) disk.device->release_image_lock();
  return disks_.size();
}

size_t VirtioDevices::hold_disk_locks() {
  std::vector<devices::virtio::BlockDevice*> taken;
  for (const auto& disk : disks_) {
    if (disk.device->image_locked()) continue;
    try {
      disk.device->hold_image_lock();
    } catch (const std::exception& error) {
      for (auto* device : taken) device->release_image_lock();
      throw Error("disk '" + disk.config.id + "': " + error.what() + "; the domain's disks stay unlocked");
    }
    taken.push_back(disk.device.get());
  }
  return disks_.size();
}

size_t VirtioDevices::announce() {
  std::string failures;
  for (const auto& net : nets_) {
    try {
      net.device->announce();
    } catch (const std::exception& error) {
      failures += (failures.empty() ? "" : "; ") + std::string("NIC '") + net.config.id + "': " + error.what();
    }
  }
  if (!failures.empty()) throw Error(failures);
  return nets_.size();
}

void VirtioDevices::placed(const Member& member, int slot) {
  if (member.kind == "disk" || member.kind == "net") plugged_.push_back({member.id, member.kind, slot});
}

void VirtioDevices::attach(PciDevices& pci) {
  for (const auto& member : devices_) placed(member, pci.add_virtio(member.device, member.id));
}

void VirtioDevices::attach(PciDevices& pci, const std::map<std::string, int>& slots) {
  for (const auto& member : devices_) {
    if (!slots.count(member.id))
      throw Error("the saved domain has no " + member.kind + " '" + member.id + "' on its PCI bus");
  }
  for (const auto& [id, slot] : slots) {
    if (slot < 1 || slot > 31) throw Error("PCI slot " + std::to_string(slot) + " of '" + id + "' is not 1-31");
    if (std::none_of(devices_.begin(), devices_.end(), [&saved_id = id](const Member& m) { return m.id == saved_id; }))
      throw Error("the saved domain's PCI slot " + std::to_string(slot) + " holds '" + id + "', which this config lacks");
  }
  for (const auto& member : devices_) {
    placed(member, pci.add_virtio(member.device, member.id, false, slots.at(member.id)));
    member.device->prepare_activation();  // a restore follows, maybe in a migration's pause
  }
}

std::vector<VirtioDevices::Plugged> VirtioDevices::plugged() const { return plugged_; }

void VirtioDevices::current_disks_and_nets(VmConfig& config) const {
  config.disks.clear();
  config.nets.clear();
  for (const auto& disk : disks_) config.disks.push_back(disk.config);
  for (const auto& net : nets_) {
    NetConfig current = net.config;
    current.mac = net.device->mac();  // a default MAC depends on the NIC's place among others
    config.nets.push_back(std::move(current));
  }
}

void VirtioDevices::check_new_id(const std::string& id) const {
  if (id.empty()) throw Error("a hot-plugged device needs an id");
  if (std::any_of(devices_.begin(), devices_.end(), [&](const Member& m) { return m.id == id; }))
    throw Error("the domain already has a device with id '" + id + "'");
}

int VirtioDevices::plug_disk(const DiskConfig& config, PciDevices& pci) {
  check_new_id(config.id);
  std::error_code error;
  for (const auto& disk : disks_)
    if (disk.device->path() == config.path || std::filesystem::equivalent(disk.device->path(), config.path, error))
      throw Error("disk image '" + config.path + "' is attached already (as '" + disk.config.id + "')");
  auto device = make_disk(config);
  const int slot = pci.add_virtio(device, config.id, /*hot_plugged=*/true);
  disks_.push_back({config, device});
  devices_.push_back({config.id, "disk", device});
  plugged_.push_back({config.id, "disk", slot});
  return slot;
}

int VirtioDevices::plug_net(const NetConfig& config, PciDevices& pci) {
  check_new_id(config.id);
  // Without a MAC, the first of kdom's defaults no NIC of the domain has.
  uint32_t index = static_cast<uint32_t>(nets_.size());
  auto in_use = [&](uint32_t candidate) {
    return std::any_of(nets_.begin(), nets_.end(),
                       [&](const Net& net) { return net.device->mac() == devices::virtio::default_mac(candidate); });
  };
  while (!config.mac && in_use(index)) ++index;
  auto device = add_net(config, index);
  int slot = 0;
  try {
    slot = pci.add_virtio(device, config.id, /*hot_plugged=*/true);
  } catch (...) {
    device->reset();  // its TAP leaves the event loop
    throw;
  }
  nets_.push_back({config, device});
  devices_.push_back({config.id, "net", device});
  plugged_.push_back({config.id, "net", slot});
  return slot;
}

void VirtioDevices::forget(const std::string& id) {
  // The last references go: the image is closed (its lock released), the TAP too.
  std::erase_if(devices_, [&](const Member& m) { return m.id == id && (m.kind == "disk" || m.kind == "net"); });
  std::erase_if(plugged_, [&](const Plugged& p) { return p.id == id; });
  std::erase_if(disks_, [&](const Disk& disk) { return disk.config.id == id; });
  std::erase_if(nets_, [&](const Net& net) { return net.config.id == id; });
}

void VirtioDevices::add_console(const VirtioConsoleConfig& config, const std::string& id) {
  hvc_console_ = std::make_unique<Console>(config.backend);
  if (!hvc_console_->pty_path().empty()) log_line("hvc0 on " + hvc_console_->pty_path());
  Console* host = hvc_console_.get();
  auto device = std::make_shared<devices::virtio::ConsoleDevice>(
      [host](std::span<const uint8_t> bytes) { host->write(bytes); });
  devices_.push_back({id, "console", device});
  int fd = host->input_fd();
  if (fd < 0) return;
  // Host input is read in the device event loop, never in a vCPU thread.
  EventLoop* events = &events_;
  auto on_input = [events, host, device, fd] {
    uint8_t buffer[4096];
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      device->send_input({buffer, static_cast<size_t>(n)});
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      events->remove(fd);  // end of input: stop watching it
      host->input_closed();
    }
  };
  try {
    events_.add(fd, on_input);
  } catch (const SystemError&) {
    // epoll cannot watch a regular file or /dev/null: such input is read once, now.
    events_.remove(fd);
    std::vector<uint8_t> all;
    uint8_t buffer[4096];
    for (ssize_t n; all.size() < devices::virtio::ConsoleDevice::kMaxPendingInput &&
                    (n = ::read(fd, buffer, sizeof(buffer))) > 0;)
      all.insert(all.end(), buffer, buffer + n);
    device->send_input(all);
    host->input_closed();
  }
}

void VirtioDevices::add_vsock(const VsockConfig& config, const std::string& id) {
  auto vsock = std::make_shared<devices::virtio::VsockDevice>(
      devices::virtio::VsockDeviceConfig{config.guest_cid, config.socket_path});
  devices_.push_back({id, "vsock", vsock});
  // The device's host sockets are served in the device event loop.
  events_.add(vsock->backend_fd(), [vsock] { vsock->process_backend(); });
  log_line("vsock: guest CID " + std::to_string(config.guest_cid) + ", host side on " + config.socket_path);
}

void VirtioDevices::add_balloon(const BalloonConfig& config, const std::string& id) {
  devices::virtio::BalloonDeviceConfig balloon;
  balloon.target_pages = static_cast<uint32_t>(config.target_mib * (kMiB / devices::virtio::kBalloonPageSize));
  balloon.deflate_on_oom = config.deflate_on_oom;
  balloon.free_page_reporting = config.free_page_reporting;
  balloon_ = std::make_shared<devices::virtio::BalloonDevice>(balloon);
  devices_.push_back({id, "balloon", balloon_});
  if (config.stats_seconds == 0) return;
  balloon_stats_timer_.reset(
      check_syscall(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), "timerfd_create"));
  itimerspec period{};
  period.it_interval.tv_sec = config.stats_seconds;
  period.it_value.tv_sec = config.stats_seconds;
  check_syscall(timerfd_settime(balloon_stats_timer_.get(), 0, &period, nullptr), "timerfd_settime");
  const int timer = balloon_stats_timer_.get();
  auto device = balloon_;
  events_.add(timer, [device, timer] {
    uint64_t expirations = 0;
    if (::read(timer, &expirations, sizeof(expirations)) == sizeof(expirations)) device->request_stats();
  });
}

std::shared_ptr<devices::virtio::NetDevice> VirtioDevices::add_net(const NetConfig& net, uint32_t index) {
  std::unique_ptr<devices::net::Tap> backend =
      net.tap.empty() ? devices::net::Tap::adopt(net.fd) : devices::net::Tap::open_by_name(net.tap);
  devices::virtio::NetDeviceConfig device_config{net.mac.value_or(devices::virtio::default_mac(index)), net.id,
                                                 net.rate_limit};
  EventLoop* events = &events_;
  auto watch = [events](int fd, std::function<void()> on_readable) {
    if (on_readable)
      events->add(fd, std::move(on_readable));
    else
      events->remove(fd);
  };
  auto device = std::make_shared<devices::virtio::NetDevice>(device_config, std::move(backend), watch);
  log_line("net" + std::to_string(index) + ": virtio-net on " + device->backend_name() + ", MAC " +
           devices::virtio::format_mac(device->mac()));
  return device;
}

nlohmann::json VirtioDevices::stats() const {
  nlohmann::json disks = nlohmann::json::array(), nets = nlohmann::json::array();
  for (const auto& [config, device] : disks_) {
    const auto& id = config.id;
    const auto counters = device->counters().snapshot();
    nlohmann::json buckets = nlohmann::json::array();
    for (size_t i = 0; i < counters.latency_buckets.size(); ++i) {
      const bool last = i == devices::virtio::BlockCounters::kLatencyBucketsUs.size();
      buckets.push_back({{"le_us", last ? nlohmann::json(nullptr) : nlohmann::json(devices::virtio::BlockCounters::kLatencyBucketsUs[i])},
                         {"count", counters.latency_buckets[i]}});
    }
    disks.push_back({{"id", id},
                     {"path", device->path()},
                     {"reads", counters.reads},
                     {"writes", counters.writes},
                     {"flushes", counters.flushes},
                     {"other_requests", counters.others},
                     {"read_bytes", counters.read_bytes},
                     {"write_bytes", counters.write_bytes},
                     {"errors", counters.errors},
                     {"latency_buckets", buckets},
                     {"latency_sum_ns", counters.latency_sum_ns}});
  }
  for (const auto& [config, device] : nets_) {
    const auto stats = device->stats();
    nets.push_back({{"id", device->id()},
                    {"mac", devices::virtio::format_mac(device->mac())},
                    {"rx_packets", stats.rx_frames},
                    {"rx_bytes", stats.rx_bytes},
                    {"rx_dropped", stats.rx_dropped},
                    {"tx_packets", stats.tx_frames},
                    {"tx_bytes", stats.tx_bytes},
                    {"tx_dropped", stats.tx_dropped},
                    {"bad_chains", stats.bad_chains}});
  }
  return {{"disks", disks}, {"nets", nets}};
}

}  // namespace kdom::vmm
