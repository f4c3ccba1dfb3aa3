// Domain: one virtual machine at run time: its KVM VM, guest memory, devices and vCPU
// threads, built from a VmConfig, run in the foreground until the guest stops, a vCPU fails
// or a signal asks it to.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "devices/bus.h"
#include "devices/guest_event.h"
#include "devices/legacy/uart8250.h"
#include "devices/power_button.h"
#include "kvm/system.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "memory/guest_memory.h"
#include "vmm/console.h"
#include "vmm/control_requests.h"
#include "vmm/control_socket.h"
#include "vmm/domain_exit.h"
#include "vmm/event_loop.h"
#include "vmm/msi_router.h"
#include "vmm/pci_devices.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_config.h"

namespace kdom::vmm {

class Domain {
 public:
  // Builds the whole machine; throws Error naming the problem (bad input, no KVM, too little
  // memory...). Nothing runs yet. Everything the user named (kernel, initrd, disks, consoles,
  // TAPs, sockets) is opened and checked before KVM is touched, so bad input is reported as
  // such on any host, with KVM or without.
  explicit Domain(const VmConfig& config);
  ~Domain();
  Domain(const Domain&) = delete;
  Domain& operator=(const Domain&) = delete;

  // Runs the vCPUs until the domain stops; returns why. SIGINT, SIGTERM and SIGHUP stop it.
  DomainExit run();

  // The balloon device, or null when the domain has none.
  std::shared_ptr<devices::virtio::BalloonDevice> balloon() const { return virtio_->balloon(); }

 private:
  void build_devices();
  void start_control();
  void on_guest_event(const devices::GuestEvent& event);
  void request_exit(DomainExit exit);
  void vcpu_thread(kvm::Vcpu& vcpu);
  // Handles one KVM exit; returns false when the vCPU must stop.
  bool handle_exit(kvm::Vcpu& vcpu);
  void fail_vcpu(kvm::Vcpu& vcpu, const std::string& reason);
  // Registers and pending events of one vCPU (stopped), to the log; after a triple fault,
  // whether they are only the reset values KVM put there.
  void log_vcpu(kvm::Vcpu& vcpu);
  // After SIGQUIT, with the vCPUs stopped but the device loop not yet (a stuck loop would never
  // stop): every vCPU and virtio device.
  void log_state();
  void stop_vcpus();
  void pump_console_input();

  VmConfig config_;
  std::unique_ptr<kvm::KvmSystem> kvm_;
  std::unique_ptr<kvm::Vm> vm_;
  std::unique_ptr<GuestMemory> memory_;
  devices::Bus io_bus_;
  devices::Bus mmio_bus_;
  std::unique_ptr<Console> console_;
  std::shared_ptr<devices::Uart8250> uart_;
  EventLoop device_events_;  // device work (virtio queues), off the vCPU threads
  std::unique_ptr<MsiRouter> msi_;
  std::unique_ptr<PciDevices> pci_;
  std::unique_ptr<VirtioDevices> virtio_;  // attached to pci_; host sides served in device_events_
  std::unique_ptr<devices::PowerButton> power_button_;
  std::atomic<bool> power_button_ready_{false};  // set once power_button_ exists (control thread)
  std::unique_ptr<ControlRequests> control_requests_;
  std::unique_ptr<ControlSocket> control_;  // served in device_events_, declared after it
  std::vector<std::unique_ptr<kvm::Vcpu>> vcpus_;
  std::vector<std::thread> threads_;

  UniqueFd wake_fd_;  // eventfd: a vCPU or device asked the domain to stop
  std::atomic<bool> stopping_{false};
  std::mutex exit_mutex_;
  std::optional<DomainExit> exit_;
};

}  // namespace kdom::vmm
