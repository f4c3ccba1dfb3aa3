// VirtioDevices: a domain's virtio devices, built from its VmConfig (before the VM exists, so
// that a bad disk, TAP or socket is reported before KVM is touched), then put on its PCI bus
// in a fixed order (disks, entropy, console, vsock, balloon, network), with their host sides
// wired to the device event loop: console input, vsock's host sockets, the balloon's
// statistics timer, the TAPs. Owns what those host sides need beyond the devices themselves.
// Disks and NICs may also be plugged in and taken out while the domain runs (DeviceHotplug).
#pragma once

#include <map>
#include <memory>
#include <string>
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
  // be stopped before this object goes. Every device gets an id, stable for the same config:
  // the user's, or for a device without one "disk<N>", "net<N>" (N counting from 0 among the
  // unnamed ones), "entropy", "console", "vsock", "balloon", each with a number appended
  // while the user already gave another device that id. Without `lock_disks` the disk images
  // are opened and checked but their image locks are not taken (an incoming live migration's:
  // hold_disk_locks takes them).
  VirtioDevices(const VmConfig& config, EventLoop& events, bool lock_disks = true);

  // Puts every device on `pci`, in the fixed order above, each in the lowest free slot.
  void attach(PciDevices& pci);
  // On a restore: puts every device on `pci` in the slot `slots` gives for its id (the saved
  // domain's, PciDevices::saved_slots). Throws Error when a device has no slot there, or an id
  // there has no device here (the config and the saved bus disagree), before adding any.
  // Each device then prepares its activation (VirtioDevice::prepare_activation).
  void attach(PciDevices& pci, const std::map<std::string, int>& slots);

  // The disks and NICs, with their ids and PCI slots. What follows is for the event loop's
  // thread (or before it starts).
  struct Plugged {
    std::string id;
    std::string kind;  // "disk" or "net"
    int slot = 0;
  };
  std::vector<Plugged> plugged() const;
  // Writes into `config`'s disks and nets the disks and NICs on the bus now, in bus order:
  // those plugged in while the domain ran included, those taken out gone, each with its id
  // (as above) and each NIC with the MAC the guest sees. For a save's config record.
  void current_disks_and_nets(VmConfig& config) const;
  // Builds a disk or NIC and puts it on `pci` as a hot-plugged device; returns its slot. Throws
  // Error naming the problem (an id in use, an image attached already or missing, a TAP that
  // cannot be opened, no free slot) with nothing changed.
  int plug_disk(const DiskConfig& config, PciDevices& pci);
  int plug_net(const NetConfig& config, PciDevices& pci);
  // The disk or NIC `id` has left the bus (PciDevices::remove): it and its counters go.
  void forget(const std::string& id);

  // A live migration's hand-over of the disks' image locks (Domain's disk-locks op), every disk
  // on the bus included (hot-plugged ones too); each returns how many disks there are.
  // release: makes every disk's completed writes durable (fdatasync), and once all are, lets
  // every lock go; a flush that fails is an Error naming the disk, with every lock kept. Only
  // while no device writes (the domain paused). hold: takes every lock; when another process
  // holds one, an Error naming the disk, and the locks this call took are let go again (all
  // or nothing).
  size_t release_disk_locks();
  size_t hold_disk_locks();
  // Every NIC sends its announcement (NetDevice::announce); returns how many NICs there are.
  // Those that could not: an Error naming them, once every NIC has tried.
  size_t announce();

  // The balloon device, or null when the domain has none.
  std::shared_ptr<devices::virtio::BalloonDevice> balloon() const { return balloon_; }

  // What the disks and NICs have served: {"disks":[{"id":..,"reads":..,...}],"nets":[...]}
  // (docs/interfaces.md, the control socket's `stats`).
  nlohmann::json stats() const;

 private:
  struct Member {
    std::string id;
    std::string kind;  // "disk", "net", "entropy", "console", "vsock", "balloon"
    std::shared_ptr<devices::virtio::VirtioDevice> device;
  };
  struct Disk {
    DiskConfig config;  // with the device's id
    std::shared_ptr<devices::virtio::BlockDevice> device;
  };
  struct Net {
    NetConfig config;  // with the device's id
    std::shared_ptr<devices::virtio::NetDevice> device;
  };
  void add_console(const VirtioConsoleConfig& config, const std::string& id);
  void add_vsock(const VsockConfig& config, const std::string& id);
  void add_balloon(const BalloonConfig& config, const std::string& id);
  std::shared_ptr<devices::virtio::NetDevice> add_net(const NetConfig& config, uint32_t index);
  std::shared_ptr<devices::virtio::BlockDevice> make_disk(const DiskConfig& config, bool lock = true);
  void check_new_id(const std::string& id) const;
  // Records where `member` went on the bus.
  void placed(const Member& member, int slot);

  EventLoop& events_;
  std::vector<Member> devices_;  // in bus order
  std::unique_ptr<Console> hvc_console_;  // host side of virtio-console, if any
  std::shared_ptr<devices::virtio::BalloonDevice> balloon_;
  std::vector<Disk> disks_;
  std::vector<Net> nets_;
  std::vector<Plugged> plugged_;  // disks and NICs on the bus
  UniqueFd balloon_stats_timer_;  // timerfd: ask the guest for fresh balloon statistics
};

}  // namespace kdom::vmm
