// VirtioDevices: a domain's virtio devices, built from its VmConfig (before the VM exists, so
// that a bad disk, TAP or socket is reported before KVM is touched), then put on its PCI bus
// in a fixed order (disks, entropy, console, vsock, balloon, network), with their host sides
// wired to the device event loop: console input, vsock's host sockets, the balloon's
// statistics timer, the TAPs. Owns what those host sides need beyond the devices themselves.
#pragma once

#include <memory>
#include <vector>

#include "base/unique_fd.h"
#include <nlohmann/json.hpp>

#include "devices/virtio/balloon.h"
#include "devices/virtio/block.h"
#include "devices/virtio/net.h"
#include "vmm/console.h"
#include "vmm/event_loop.h"
#include "vmm/pci_devices.h"
#include "vmm/vm_config.h"

namespace kdom::vmm {

class VirtioDevices {
 public:
  // Builds every device `config` asks for; throws Error naming the one that cannot be made
  // (a missing disk image, a TAP in use, a vsock socket path that exists...). `events` must
  // be stopped before this object goes.
  VirtioDevices(const VmConfig& config, EventLoop& events);

  // Puts every device on `pci`, in the fixed order above.
  void attach(PciDevices& pci);

  // The balloon device, or null when the domain has none.
  std::shared_ptr<devices::virtio::BalloonDevice> balloon() const { return balloon_; }

  // What the disks and NICs have served: {"disks":[{"id":..,"reads":..,...}],"nets":[...]}
  // (docs/interfaces.md, the control socket's `stats`).
  nlohmann::json stats() const;

 private:
  void add_console(const VirtioConsoleConfig& config);
  void add_vsock(const VsockConfig& config);
  void add_balloon(const BalloonConfig& config);
  void add_net(const NetConfig& config, uint32_t index);

  EventLoop& events_;
  std::vector<std::shared_ptr<devices::virtio::VirtioDevice>> devices_;  // in bus order
  std::unique_ptr<Console> hvc_console_;  // host side of virtio-console, if any
  std::shared_ptr<devices::virtio::BalloonDevice> balloon_;
  std::vector<std::pair<std::string, std::shared_ptr<devices::virtio::BlockDevice>>> disks_;  // by id
  std::vector<std::shared_ptr<devices::virtio::NetDevice>> nets_;
  UniqueFd balloon_stats_timer_;  // timerfd: ask the guest for fresh balloon statistics
};

}  // namespace kdom::vmm
