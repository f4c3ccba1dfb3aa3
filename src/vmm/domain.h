// Domain: one virtual machine at run time: its KVM VM, guest memory, devices and vCPU
// threads, built from a VmConfig, run in the foreground until the guest stops, a vCPU fails
// or a signal asks it to.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/standby_thread.h"
#include "base/unique_fd.h"
#include "devices/bus.h"
#include "devices/guest_event.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/uart8250.h"
#include "devices/power_button.h"
#include "kvm/system.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "memory/guest_memory.h"
#include "snapshot/memory_records.h"
#include "snapshot/snapshot_source.h"
#include "vmm/console.h"
#include "vmm/control_requests.h"
#include "vmm/control_socket.h"
#include "vmm/device_hotplug.h"
#include "vmm/dirty_ring_log.h"
#include "vmm/domain_exit.h"
#include "vmm/event_loop.h"
#include "vmm/event_stream.h"
#include "vmm/migration_runner.h"
#include "vmm/msi_router.h"
#include "vmm/pci_devices.h"
#include "vmm/vcpu_throttle.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_config.h"

namespace kdom::vmm {

// Blocks the stop signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT) in the calling thread, and so in
// the threads it starts, and restores their default disposition (an ancestor may have set
// them to be ignored, and an ignored signal is lost even while blocked). `kdom run` calls it
// first thing, so a signal that comes while the domain is being built waits for run().
void block_stop_signals();

class Domain {
 public:
  // Builds the whole machine; throws Error naming the problem (bad input, no KVM, too little
  // memory...). Nothing runs yet. Everything the user named (kernel, initrd, disks, consoles,
  // TAPs, sockets) is opened and checked before KVM is touched, so bad input is reported as
  // such on any host, with KVM or without.
  explicit Domain(const VmConfig& config);
  // Where a restored domain comes from. An incoming live migration's disks are opened and
  // checked but not locked: the source's VMM holds their image locks until it hands them over
  // (the control socket's disk-locks op; until then the domain cannot be unpaused). Started
  // running, it takes them once the stream is read, and fails to start when it cannot.
  enum class RestoreSource { kSavedFile, kIncomingMigration };
  // Restores a saved domain (kdom restore) instead of booting one: `config` is the saved one
  // (source.config()) or one the caller built from it with new host-side paths and TAPs; the
  // guest's RAM, vCPUs, irqchip and devices come from `source`, checked as they are read (a
  // CPU this host lacks, a damaged record, a device the config does not have: Error, nothing
  // runs); the stream is read up to its End record and no further. With `start_paused` the
  // vCPUs wait for an unpause.
  Domain(const VmConfig& config, snapshot::SnapshotSource& source, bool start_paused,
         RestoreSource from = RestoreSource::kSavedFile);
  ~Domain();
  Domain(const Domain&) = delete;
  Domain& operator=(const Domain&) = delete;

  // Runs the vCPUs until the domain stops; returns why. SIGINT, SIGTERM and SIGHUP stop it;
  // one that came before run() (see block_stop_signals) stops it before any vCPU runs.
  // `on_ready` runs once everything is built, right before the vCPUs start.
  DomainExit run(const std::function<void()>& on_ready = {});

  // The balloon device, or null when the domain has none.
  std::shared_ptr<devices::virtio::BalloonDevice> balloon() const { return virtio_->balloon(); }

 private:
  // The console, the virtio devices' host sides and the control socket: what the user named,
  // opened before KVM is touched.
  void open_host_side();
  // Everything but the guest's RAM contents and vCPU state, for a boot and a restore alike.
  void build(std::optional<std::vector<kvm_cpuid_entry2>> saved_cpuid);
  // The legacy devices and the PCI bus; the virtio devices are attached to it afterwards (a
  // restore puts each in its saved slot).
  void build_devices();
  // Save and restore (domain_snapshot.cc). save(): the control socket's `save` op, in the
  // device loop's thread: the whole domain to `path`, then running again (`then` "running")
  // or left paused ("paused"); a domain paused before stays paused. A failure (disk full...)
  // removes the partial file, leaves the domain as it was and throws Error saying why.
  // `toolstack` goes into the config record as is (kdomd's own config of the domain).
  nlohmann::json save(const std::string& path, const std::string& then, const nlohmann::json& toolstack);
  snapshot::MemoryCounts write_snapshot(snapshot::StreamWriter& writer, const nlohmann::json& toolstack);
  // The parts of a snapshot stream that save and live migration share, in the device loop's
  // thread (the devices are its own): the domain's config as it is now (disks and NICs
  // hot-plugged since its start included); the host-facts and config records; with the
  // domain paused, the device states that go last (the hot-plug state first: it finishes the
  // ejects the guest made); then the vCPU, irqchip and device records and End.
  struct DeviceStates {
    nlohmann::json hotplug;
    nlohmann::json pci;
  };
  VmConfig current_config() const;
  void write_head_records(snapshot::StreamWriter& writer, const VmConfig& vm, const nlohmann::json& toolstack);
  DeviceStates save_device_states();
  void write_state_records(snapshot::StreamWriter& writer, const DeviceStates& states);
  // Live migration's sending side (domain_migration.cc). migrate_send(): the control socket's
  // migrate-send, in a migration thread (MigrationRunner): the whole domain to `stream_fd` as
  // a snapshot stream, iterative pre-copy while the guest runs, then stop-and-copy; leaves
  // the domain paused and returns the reply's figures. A failure, a cancel or the domain
  // stopping end it with Error saying why, the domain running again if the migration paused
  // it. migrate_cancel(): any thread; false when no migration runs (or its End is written).
  nlohmann::json migrate_send(int stream_fd, const MigrationOptions& options);
  bool migrate_cancel();
  bool migrating();
  nlohmann::json send_migration_stream(int stream_fd, const MigrationOptions& options, bool& paused_here,
                                       bool& disks_released_here);
  // KVM's dirty log of every memory slot on or off (slot i is RAM region i), and the pages
  // dirtied since the last take, per region: KVM's log (the guest's writes) or the VMM's
  // (its own writes into guest RAM).
  void set_kvm_dirty_log(bool on);
  std::vector<std::vector<uint64_t>> take_dirty_pages();
  void stop_dirty_logs();
  void stop_dirty_logs_logged();  // the same, a failure logged
  // A migration whose stream went whole leaves the logs on (its domain is to be destroyed); an
  // unpause, with no migration running, stops them.
  void stop_dirty_logs_after_migration();
  // KVM's log is its dirty ring where KVM has it (domain_dirty_ring.cc): enabled as the VM is
  // built, before any vCPU, and each vCPU's ring mapped once they all exist; its bitmaps
  // otherwise. dirty_log_kind(): which, as the migration reports it ("dirty ring" or "dirty
  // bitmap").
  void enable_dirty_ring();
  void map_dirty_rings();
  const char* dirty_log_kind() const;
  // When the domain stops: the migration running, if any, is cancelled and waited for, and no
  // other starts.
  void end_migration();
  void restore_state(snapshot::SnapshotSource& source);
  // A live migration's hand-over (domain_handover.cc), for the control socket's ops.
  // disk-locks: with `hold` every disk's image lock is taken (all or nothing), without it every
  // disk is flushed and its lock let go, only while the domain is paused; returns the number
  // of disks. announce: every NIC's RARP announcement; returns the number of NICs.
  size_t set_disk_locks(bool hold);
  size_t announce();
  void start_control();
  // To the control socket's event subscribers, if there is a control socket; any thread.
  void publish_event(const std::string& name, const nlohmann::json& details = nullptr);
  void on_guest_event(const devices::GuestEvent& event);
  void request_exit(DomainExit exit);
  // The vCPU threads, each waiting for run() to give it its vCPU. A restore starts them before
  // its stream ends, so that no thread is created in a live migration's pause.
  void start_vcpu_threads();
  void vcpu_thread(kvm::Vcpu& vcpu);
  // In a vCPU thread whose KVM_RUN a signal or immediate_exit interrupted: a pause or a stop
  // is left to the loop, a throttle's kick is rested (VcpuThrottle).
  void interrupted(kvm::Vcpu& vcpu);
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
  // Control requests (from the device loop's thread); throw Error when they cannot be done.
  // `announce`: log the pause and publish "paused" (a migration's stop-and-copy does not: the
  // daemon would record a state the domain leaves within milliseconds, during the pause).
  void pause_vcpus(bool announce = true);
  void unpause_vcpus();
  DomainStatus status();
  // The control socket's `stats`: each vCPU's thread id and exits by reason, the disks' and
  // NICs' counters, the balloon's.
  nlohmann::json stats();
  // In a vCPU thread: waits while a pause is asked for.
  void park(kvm::Vcpu& vcpu);

  VmConfig config_;
  std::unique_ptr<kvm::KvmSystem> kvm_;
  std::unique_ptr<kvm::Vm> vm_;
  std::vector<uint32_t> saved_msr_indices_;  // the MSRs a vCPU's saved state holds
  size_t saved_xsave_bytes_ = 0;             // the size of its XSAVE area
  std::unique_ptr<GuestMemory> memory_;
  devices::Bus io_bus_;
  devices::Bus mmio_bus_;
  EventLoop device_events_;  // device work (virtio queues), off the vCPU threads
  std::unique_ptr<Console> console_;  // a socket console is served in device_events_
  std::shared_ptr<devices::Uart8250> uart_;
  std::unique_ptr<MsiRouter> msi_;
  std::unique_ptr<PciDevices> pci_;
  std::unique_ptr<VirtioDevices> virtio_;  // attached to pci_; host sides served in device_events_
  std::unique_ptr<DeviceHotplug> hotplug_;  // changes pci_ and virtio_ while the vCPUs run
  std::atomic<bool> hotplug_ready_{false};  // set once hotplug_ exists (control thread)
  std::shared_ptr<devices::CmosRtc> rtc_;
  std::shared_ptr<devices::I8042> i8042_;
  std::unique_ptr<devices::PowerButton> power_button_;
  std::atomic<bool> power_button_ready_{false};  // set once power_button_ exists (control thread)
  std::unique_ptr<ControlRequests> control_requests_;
  std::unique_ptr<EventStream> event_stream_;  // served in device_events_; null without control
  std::unique_ptr<MigrationRunner> migration_runner_;  // null without control; closed before vCPUs go
  std::unique_ptr<ControlSocket> control_;  // served in device_events_, declared after it
  std::vector<std::unique_ptr<kvm::Vcpu>> vcpus_;
  std::vector<kvm_cpuid_entry2> guest_cpuid_;  // vCPU 0's CPUID: the guest's CPU model
  std::vector<std::unique_ptr<StandbyThread>> threads_;  // one per vCPU, from start_vcpu_threads()
  // Live migration's auto-converge: slows the vCPUs while a migration asks (no thread
  // otherwise). Made in run() before the vCPU threads get their vCPUs; declared after them,
  // and stopped in stop_vcpus(), so that its kicks never reach a thread that has gone.
  std::unique_ptr<VcpuThrottle> throttle_;
  // Per vCPU: its thread's id (for the daemon's vcpu-list and vcpu-pin), when it first went
  // into the guest (CLOCK_MONOTONIC ns), and its exits by reason, counted by its own thread.
  struct VcpuCounters {
    std::atomic<int> tid{0};
    std::atomic<int64_t> entered_ns{0};  // 0 until then
    std::atomic<uint64_t> io{0}, mmio{0}, intr{0}, system_event{0}, other{0};
  };
  std::vector<std::unique_ptr<VcpuCounters>> vcpu_counters_;

  UniqueFd wake_fd_;  // eventfd: a vCPU or device asked the domain to stop
  std::atomic<bool> stopping_{false};
  std::mutex exit_mutex_;
  std::optional<DomainExit> exit_;

  // Pausing: the vCPU threads park on pause_cv_ while pause_requested_ is set.
  std::mutex pause_mutex_;
  std::condition_variable pause_cv_;
  bool pause_requested_ = false;  // guarded by pause_mutex_
  size_t parked_ = 0;             // guarded by pause_mutex_
  std::atomic<bool> pause_pending_{false};  // pause_requested_, for the vCPU loop's cheap check
  std::atomic<bool> running_{false};        // the vCPU threads have been started
  // Whether the domain holds its disks' image locks: false while a live migration hands them
  // over (an incoming domain until disk-locks takes them; a source from disk-locks letting them
  // go). Unpause refuses while false, so a running domain always holds them. Changed and read
  // in the device loop's thread (control requests), and before it starts.
  std::atomic<bool> disks_locked_{true};
  std::chrono::steady_clock::time_point started_;
  bool restored_ = false;  // from a snapshot or an incoming migration: run() logs when it ran

  // Live migration: at most one at a time.
  std::mutex migration_mutex_;
  bool migrating_ = false;   // guarded by migration_mutex_
  int migration_fd_ = -1;    // guarded by migration_mutex_: the stream, for a cancel to shut down
  std::atomic<bool> migration_cancelled_{false};
  bool dirty_logging_ = false;  // the migration thread's: both dirty logs are on
  uint32_t dirty_ring_entries_ = 0;  // a vCPU's, where KVM's dirty ring is on
  std::unique_ptr<DirtyRingLog> dirty_rings_;  // null without the ring: KVM_GET_DIRTY_LOG
  // The device loop's: the stop-and-copy paused the domain and an unpause would tear the
  // stream's state; cleared when the migration ends.
  bool migration_holds_pause_ = false;
};

}  // namespace kdom::vmm
