// DeviceHotplug: a running domain's disks and NICs come and go (kdom block-attach,
// network-detach...) by ACPI PCI hot-plug, which a stock Linux guest's acpiphp driver follows:
// a new device is put in a free slot of bus 0 and announced (the GED's interrupt, then a
// "device check" on the slot); a removal is asked for (an "eject request"), and the device
// leaves once the guest has let it go (its _EJ0 writes the slot's bit to the eject register);
// a forced removal stops the device and takes it from the domain at once, and its slot is
// freed when the guest ejects it. Each change is published as an event ("device-attached",
// "device-detached"). Requests come from the control socket, in the event loop's thread; an
// eject comes in a vCPU thread, which only takes the device off the bus and hands the rest
// (stopping it, freeing its notifiers and vectors) to the event loop.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "devices/interrupt_line.h"
#include "devices/pci/hotplug_controller.h"
#include "vmm/event_loop.h"
#include "vmm/pci_devices.h"
#include "vmm/virtio_devices.h"

namespace kdom::vmm {

class DeviceHotplug {
 public:
  using Publish = std::function<void(const std::string& event, const nlohmann::json& details)>;

  // `line` is the GED's hot-plug interrupt. Everything given must outlive this object, and
  // `events` must be stopped before it goes.
  DeviceHotplug(PciDevices& pci, VirtioDevices& virtio, EventLoop& events, std::shared_ptr<devices::InterruptLine> line,
                Publish publish);
  ~DeviceHotplug();
  DeviceHotplug(const DeviceHotplug&) = delete;
  DeviceHotplug& operator=(const DeviceHotplug&) = delete;

  // The hot-plug registers, for the I/O bus at AcpiConfig::pci_hotplug_port.
  std::shared_ptr<devices::pci::PciHotplugController> registers() const { return controller_; }

  // The control socket's device requests (control_requests.h), in the event loop's thread:
  //   {"op":"disk-attach","disk":{..a vm.json disks[] item, with an id..}} -> {"ok":true,"id":..,"slot":..}
  //   {"op":"net-attach","net":{..a vm.json nets[] item, with an id and a tap..}} -> the same
  //   {"op":"device-detach","id":..[,"force":true]} -> {"ok":true,"id":..,"state":"detaching"|"detached"}
  //   {"op":"devices"} -> {"ok":true,"devices":[{"id":..,"kind":"disk"|"net","slot":..,
  //                         "state":"attached"|"detaching"}]}
  // Throws Error (one line) for a request that cannot be done; nothing changes then.
  nlohmann::json handle(const std::string& op, const nlohmann::json& request);

  // Save and restore, in the event loop's thread with the vCPUs stopped:
  // {"registers": PciHotplugController::save_state, "detaching": [slots whose removal the
  // guest was asked for]}. save_state first finishes the ejects the guest has made (their
  // devices leave the bus and the domain), so call it before PciDevices::save_state and
  // VirtioDevices::current_disks_and_nets. load_state refuses (snapshot::StateError, nothing
  // changed) a slot outside 1-31 or a register bit for slot 0.
  nlohmann::json save_state();
  void load_state(const nlohmann::json& state);

 private:
  nlohmann::json attach(const std::string& kind, const nlohmann::json& request);
  nlohmann::json detach(const std::string& id, bool force);
  nlohmann::json list() const;
  void on_eject(int slot);  // a vCPU thread
  void finish_ejects();     // the event loop: ejected slots' devices go
  void finish(int slot, const std::string& how);

  PciDevices& pci_;
  VirtioDevices& virtio_;
  EventLoop& events_;
  Publish publish_;
  std::shared_ptr<devices::pci::PciHotplugController> controller_;
  UniqueFd ejected_fd_;          // eventfd: a vCPU saw an eject
  std::mutex mutex_;
  std::vector<int> ejected_;     // under mutex_: slots ejected, not yet finished
  std::set<int> detaching_;      // event loop: slots whose removal was asked for
};

}  // namespace kdom::vmm
