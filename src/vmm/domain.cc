// Building a domain and running its vCPUs.
#include "vmm/domain.h"

#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "arch/x86/acpi_tables.h"
#include "arch/x86/boot_loader.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/e820.h"
#include "arch/x86/irq_routes.h"
#include "arch/x86/layout.h"
#include "arch/x86/reset_vector.h"
#include "arch/x86/vcpu_setup.h"
#include "base/elapsed.h"
#include "base/error.h"
#include "base/eventfd.h"
#include "base/file.h"
#include "base/log.h"
#include "devices/legacy/acpi_sleep.h"
#include "devices/legacy/boot_timer.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/pvpanic.h"
#include "devices/legacy/reset_control.h"
#include "snapshot/host_facts.h"
#include "vmm/kvm_interrupt_line.h"
#include "vmm/vcpu_report.h"

namespace kdom::vmm {

namespace {

constexpr int kKickSignal = SIGUSR1;
constexpr uint64_t kComBase = 0x3f8;
constexpr uint32_t kComIrq = 4;
constexpr uint32_t kPowerButtonGsi = 23;  // IOAPIC pins no other device uses
constexpr uint32_t kPciHotplugGsi = 22;
constexpr uint16_t kPciHotplugPort = 0xae00;
constexpr uint64_t kMiB = 1024 * 1024;
// How long a pause request waits for every vCPU to park before giving up.
constexpr auto kPauseTimeout = std::chrono::seconds(10);
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

sigset_t stop_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal_number : kStopSignals) sigaddset(&set, signal_number);
  return set;
}

void ignore_signal(int) {}

void install_kick_handler() {
  struct sigaction action{};
  action.sa_handler = ignore_signal;
  sigemptyset(&action.sa_mask);
  sigaction(kKickSignal, &action, nullptr);  // no SA_RESTART: KVM_RUN returns EINTR
}

uint64_t host_memory_bytes() {
  struct sysinfo info{};
  if (sysinfo(&info) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(info.totalram) * info.mem_unit;
}

bool host_kvm_is_pvm() { return std::filesystem::exists("/sys/module/kvm_pvm"); }

// Whether an ELF kernel is Linux: it carries a note named "Linux" (the build salt every
// vmlinux has) or a Xen GUEST_OS note saying "linux". A malformed file is "not Linux": the
// loader reports what is wrong with it.
bool elf_is_linux(std::span<const uint8_t> file) {
  if (file.size() < sizeof(Elf64_Ehdr)) return false;
  Elf64_Ehdr header;
  std::memcpy(&header, file.data(), sizeof(header));
  if (header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phoff > file.size()) return false;
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    const uint64_t at = header.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr);
    if (at + sizeof(Elf64_Phdr) > file.size()) return false;
    Elf64_Phdr phdr;
    std::memcpy(&phdr, file.data() + at, sizeof(phdr));
    if (phdr.p_type != PT_NOTE || phdr.p_offset > file.size() || phdr.p_filesz > file.size() - phdr.p_offset)
      continue;
    std::span<const uint8_t> notes = file.subspan(phdr.p_offset, phdr.p_filesz);
    while (notes.size() >= sizeof(Elf64_Nhdr)) {
      Elf64_Nhdr note;
      std::memcpy(&note, notes.data(), sizeof(note));
      const uint64_t name_size = (uint64_t{note.n_namesz} + 3) & ~uint64_t{3};
      const uint64_t desc_size = (uint64_t{note.n_descsz} + 3) & ~uint64_t{3};
      if (sizeof(note) + name_size + desc_size > notes.size()) break;
      const std::string_view name(reinterpret_cast<const char*>(notes.data() + sizeof(note)),
                                  note.n_namesz ? note.n_namesz - 1 : 0);
      const std::string_view desc(reinterpret_cast<const char*>(notes.data() + sizeof(note) + name_size),
                                  note.n_descsz);
      constexpr uint32_t kXenElfnoteGuestOs = 6;
      if (name == "Linux") return true;
      if (name == "Xen" && note.n_type == kXenElfnoteGuestOs && desc.substr(0, 5) == "linux") return true;
      notes = notes.subspan(sizeof(note) + name_size + desc_size);
    }
  }
  return false;
}

bool is_linux_kernel(std::span<const uint8_t> kernel, x86::KernelFormat format) {
  return format == x86::KernelFormat::kBzImage || elf_is_linux(kernel);
}

}  // namespace

void block_stop_signals() {
  const sigset_t stop_signals = stop_signal_set();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  for (int signal_number : kStopSignals) signal(signal_number, SIG_DFL);
}

const char* exit_kind_name(DomainExitKind kind) {
  switch (kind) {
    case DomainExitKind::kPowerOff: return "poweroff";
    case DomainExitKind::kReboot: return "reboot";
    case DomainExitKind::kPanic: return "crash";
    case DomainExitKind::kDebugExit: return "debug-exit";
    case DomainExitKind::kVcpuFailure: return "vcpu-failure";
    case DomainExitKind::kSignal: return "signal";
    case DomainExitKind::kStartFailure: return "start-failure";
    case DomainExitKind::kSaved: return "saved";
  }
  return "vcpu-failure";
}

nlohmann::json exit_report(const DomainExit& exit) {
  std::string message = exit.message;
  std::replace(message.begin(), message.end(), '\n', ' ');
  return {{"reason", exit_kind_name(exit.kind)},
          {"code", exit.code},
          {"message", message},
          {"exit_status", exit_status(exit)}};
}

void write_exit_file(const std::string& path, const DomainExit& exit) {
  const std::string temporary = path + ".tmp";
  const std::string text = exit_report(exit).dump() + "\n";
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) throw SystemError("cannot write exit file '" + temporary + "'", errno);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      ::unlink(temporary.c_str());
      throw SystemError("cannot write exit file '" + temporary + "'", error);
    }
    done += static_cast<size_t>(n);
  }
  // The data reaches the disk before the name does: a crash leaves the old file or the whole
  // new one, never an empty one.
  if (::fsync(fd.get()) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    throw SystemError("cannot write exit file '" + path + "'", error);
  }
}

namespace {

void check_memory_fits_host(const VmConfig& config) {
  const uint64_t host_bytes = host_memory_bytes();
  if (config.memory_mib * kMiB > host_bytes)
    throw Error("--memory " + std::to_string(config.memory_mib) + " MiB is more than this host has (" +
                std::to_string(host_bytes / kMiB) + " MiB)");
}

}  // namespace

Domain::Domain(const VmConfig& config) : config_(config) {
  validate(config_);
  check_memory_fits_host(config_);
  std::vector<uint8_t> kernel = read_file(config_.kernel_path, "kernel");
  std::optional<std::vector<uint8_t>> initrd;
  if (config_.initrd_path) initrd = read_file(*config_.initrd_path, "initrd");
  uint64_t ram_bytes = config_.memory_mib * kMiB;
  if (initrd && initrd->size() > ram_bytes)
    throw Error("initrd '" + *config_.initrd_path + "' (" + std::to_string((initrd->size() + kMiB - 1) / kMiB) +
                " MiB) is larger than guest memory (" + std::to_string(config_.memory_mib) + " MiB)");
  auto format = x86::detect_kernel_format(kernel);
  if (host_kvm_is_pvm() && is_linux_kernel(kernel, format))
    log_line("warning: this host's KVM is kvm_pvm (software-assisted), on which a stock Linux kernel will not "
             "boot; use a host with hardware virtualization (see scripts/test-host.sh)");
  open_host_side();

  memory_ = std::make_unique<GuestMemory>(x86::ram_ranges(ram_bytes));
  x86::AcpiConfig acpi;
  acpi.vcpu_count = config_.vcpus;
  acpi.sleep_control_port = devices::AcpiSleep::kBase;
  acpi.sleep_status_port = devices::AcpiSleep::kBase + 1;
  acpi.pvpanic_port = devices::PvPanic::kBase;
  acpi.com1_port = kComBase;
  acpi.com1_irq = kComIrq;
  acpi.power_button_gsi = kPowerButtonGsi;
  acpi.pci_hotplug_gsi = kPciHotplugGsi;
  acpi.pci_hotplug_port = kPciHotplugPort;
  auto tables = x86::build_acpi_tables(acpi, x86::kAcpiTablesAddress);
  if (tables.bytes.size() > x86::kAcpiTablesMaxSize) throw Error("ACPI tables too large");
  memory_->write(tables.address, tables.bytes.data(), tables.bytes.size());
  x86::write_reset_vector_stub(*memory_);

  x86::BootImages images{kernel, std::nullopt, config_.cmdline};
  if (initrd) images.initrd = std::span<const uint8_t>(*initrd);
  x86::BootEntry boot = x86::load_boot_images(*memory_, ram_bytes, images, tables.rsdp_address);

  kvm_ = std::make_unique<kvm::KvmSystem>();
  build(std::nullopt);
  virtio_->attach(*pci_);
  x86::setup_boot_vcpu(*vcpus_[0], *memory_, boot);
  log_line("booting " + std::string(x86::kernel_format_name(format)) + " " + config_.kernel_path + ", " +
           std::to_string(config_.memory_mib) + " MiB, " + std::to_string(config_.vcpus) + " vCPU(s)");
}

Domain::Domain(const VmConfig& config, snapshot::SnapshotSource& source, bool start_paused, RestoreSource from)
    : config_(config) {
  disks_locked_ = from != RestoreSource::kIncomingMigration;
  restored_ = true;
  validate(config_);
  check_memory_fits_host(config_);
  kvm_ = std::make_unique<kvm::KvmSystem>();
  // Before anything is built: a host that lacks what the guest uses is the first thing to say.
  snapshot::check_cpu_model(source.host_facts(), kvm_->supported_cpuid());
  open_host_side();
  memory_ = std::make_unique<GuestMemory>(x86::ram_ranges(config_.memory_mib * kMiB));
  build(snapshot::guest_cpuid_of(source.host_facts()));
  pci_->defer_notifiers();  // registered in run(), once the guest runs
  start_vcpu_threads();  // if the restore fails, they end as threads_ goes
  restore_state(source);
  if (start_paused) {
    pause_requested_ = true;
    pause_pending_ = true;
    pci_->quiesce();
  } else if (!disks_locked_) {
    set_disk_locks(true);  // a running domain holds its locks: the source must have let go
  }
  log_line("restored from " + source.name() + ", " + std::to_string(config_.memory_mib) + " MiB, " +
           std::to_string(config_.vcpus) + " vCPU(s)" + (start_paused ? ", paused" : ""));
}

void Domain::open_host_side() {
  // Socket input is read in the device loop, which starts with run(): uart_ exists by then.
  console_ = std::make_unique<Console>(config_.console, &device_events_,
                                       [this](std::span<const uint8_t> bytes) { uart_->enqueue_input(bytes); });
  if (!console_->pty_path().empty()) log_line("console on " + console_->pty_path());
  if (config_.console.kind == ConsoleKind::kSocket) log_line("console on socket " + config_.console.path);
  virtio_ = std::make_unique<VirtioDevices>(config_, device_events_, disks_locked_);
  start_control();
}

void Domain::build(std::optional<std::vector<kvm_cpuid_entry2>> saved_cpuid) {
  int max_vcpus = kvm_->max_vcpus();
  if (config_.vcpus > static_cast<uint32_t>(max_vcpus))
    throw Error("--vcpus " + std::to_string(config_.vcpus) + " is above this host's KVM limit of " +
                std::to_string(max_vcpus));
  vm_ = std::make_unique<kvm::Vm>(*kvm_);
  // What a vCPU's saved state holds, asked once here rather than in a migration's pause.
  saved_msr_indices_ = kvm_->msr_index_list();
  saved_xsave_bytes_ = static_cast<size_t>(std::max(vm_->check_extension(KVM_CAP_XSAVE2), 4096));
  enable_dirty_ring();  // before any vCPU exists
  vm_->set_tss_address(x86::kKvmTssAddress);
  vm_->set_identity_map_address(x86::kKvmIdentityMapAddress);
  vm_->create_irqchip();
  vm_->create_pit();
  uint32_t slot = 0;
  for (const auto& region : memory_->regions())
    vm_->set_memory_region(slot++, region.range.start, region.range.size, region.host);

  build_devices();

  // A restored guest keeps the CPU model it was started with (its vCPU 0 table, each vCPU's
  // own APIC ids filled in again), not this host's.
  const auto cpuid_base = saved_cpuid ? *saved_cpuid : kvm_->supported_cpuid();
  for (uint32_t id = 0; id < config_.vcpus; ++id) {
    auto vcpu = std::make_unique<kvm::Vcpu>(*kvm_, *vm_, id);
    auto cpuid = x86::vcpu_cpuid(cpuid_base, id, config_.vcpus);
    x86::setup_vcpu_common(*vcpu, cpuid);
    if (id == 0) guest_cpuid_ = std::move(cpuid);
    vcpus_.push_back(std::move(vcpu));
    vcpu_counters_.push_back(std::make_unique<VcpuCounters>());
  }
  map_dirty_rings();
  wake_fd_.reset(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
}

Domain::~Domain() {
  end_migration();
  stop_vcpus();
  device_events_.stop();
}

void Domain::end_migration() {
  if (!migration_runner_) return;
  // The migration sees stopping_ (or the cancel) at its next record, or its blocked write
  // fails now; it needs the device loop to finish (it unpauses there), so before that stops.
  migrate_cancel();
  migration_runner_->close();
}

void Domain::build_devices() {
  auto events = [this](const devices::GuestEvent& event) { on_guest_event(event); };
  Console* console = console_.get();
  uart_ = std::make_shared<devices::Uart8250>(std::make_shared<KvmInterruptLine>(*vm_, kComIrq),
                                              [console](uint8_t byte) { console->write_byte(byte); });
  io_bus_.add(kComBase, devices::Uart8250::kRegisterCount, uart_);
  i8042_ = std::make_shared<devices::I8042>(events);
  io_bus_.add(devices::I8042::kBase, devices::I8042::kLength, i8042_);
  rtc_ = std::make_shared<devices::CmosRtc>();
  io_bus_.add(devices::CmosRtc::kBase, devices::CmosRtc::kLength, rtc_);
  io_bus_.add(devices::DebugExit::kBase, devices::DebugExit::kLength, std::make_shared<devices::DebugExit>(events));
  msi_ = std::make_unique<MsiRouter>(*vm_, x86::default_irqchip_routes(), x86::kFirstMsiGsi);
  pci_ = std::make_unique<PciDevices>(*vm_, *memory_, device_events_, *msi_);
  hotplug_ = std::make_unique<DeviceHotplug>(*pci_, *virtio_, device_events_,
                                             std::make_shared<KvmInterruptLine>(*vm_, kPciHotplugGsi),
                                             [this](const std::string& event, const nlohmann::json& details) {
                                               publish_event(event, details);
                                             });
  hotplug_ready_.store(true, std::memory_order_release);
  io_bus_.add(kPciHotplugPort, devices::pci::PciHotplugController::kLength, hotplug_->registers());
  io_bus_.add(devices::pci::PciConfigIo::kBase, devices::pci::PciConfigIo::kLength,
              pci_->config_io(std::make_shared<devices::ResetControl>(events)));
  mmio_bus_.add(PciDevices::window_start(), PciDevices::window_size(), pci_->mmio_window());
  io_bus_.add(devices::PvPanic::kBase, devices::PvPanic::kLength, std::make_shared<devices::PvPanic>(events));
  io_bus_.add(devices::AcpiSleep::kBase, devices::AcpiSleep::kLength,
              std::make_shared<devices::AcpiSleep>(x86::kAcpiS5SleepType, events));
  power_button_ = std::make_unique<devices::PowerButton>(std::make_shared<KvmInterruptLine>(*vm_, kPowerButtonGsi));
  power_button_ready_.store(true, std::memory_order_release);
  io_bus_.add(devices::BootTimer::kBase, devices::BootTimer::kLength,
              std::make_shared<devices::BootTimer>([](uint8_t value) {
                char line[128];
                std::snprintf(line, sizeof(line), "boot-timer: %.3f ms since start (value 0x%02x)",
                              seconds_since_process_start() * 1000.0, value);
                log_line(line);
              }));
}

void Domain::start_control() {
  if (config_.control_path.empty()) return;
  // The control socket opens before KVM does (a bad path is bad input, found on any host), so
  // a request may come before the power button exists.
  DomainActions actions;
  actions.press_power_button = [this] {
    if (!power_button_ready_.load(std::memory_order_acquire)) return false;
    power_button_->press();
    return true;
  };
  actions.pause = [this] { pause_vcpus(); };
  actions.unpause = [this] {
    if (migration_holds_pause_)
      throw Error("a migration is sending the paused domain's last state (migrate-cancel ends it)");
    unpause_vcpus();
  };
  actions.status = [this] { return status(); };
  actions.stats = [this] { return stats(); };
  actions.devices = [this](const std::string& op, const nlohmann::json& request) {
    if (!hotplug_ready_.load(std::memory_order_acquire))
      throw Error("the domain is still starting: its devices cannot change yet");
    // The migration sent the config at its start; the destination builds those devices.
    if (op != "devices" && migrating())
      throw Error("a migration is running: the domain's devices cannot change until it ends");
    // A disk attached while the locks are let go (a live migration handing the disks over) is
    // refused, not opened unlocked to be locked with the others: the migration's stream has
    // described the domain without it, so on the source it would be lost with the source's
    // copy, and the destination's copy is not yet the domain. Once the domain holds its locks
    // again (either side), disks attach as usual.
    if (op == "disk-attach" && !disks_locked_)
      throw Error("the domain's disks are not locked (they are handed over in a live migration): attach the "
                  "disk once the domain holds them again");
    return hotplug_->handle(op, request);
  };
  actions.reboot = [this] { request_exit({DomainExitKind::kReboot, 0, "reboot requested by the host"}); };
  actions.save = [this](const std::string& path, const std::string& then, const nlohmann::json& toolstack) {
    if (migrating()) throw Error("a migration is running (migrate-cancel ends it)");
    return save(path, then, toolstack);
  };
  actions.disk_locks = [this](bool hold) { return set_disk_locks(hold); };
  actions.announce = [this] { return announce(); };
  actions.migrate_send = [this](int stream_fd, const MigrationOptions& options) {
    return migrate_send(stream_fd, options);
  };
  actions.migrate_cancel = [this] { return migrate_cancel(); };
  control_requests_ = std::make_unique<ControlRequests>(virtio_->balloon(), config_.memory_mib, std::move(actions));
  event_stream_ = std::make_unique<EventStream>(device_events_);
  migration_runner_ = std::make_unique<MigrationRunner>([this](const nlohmann::json& request, int stream_fd) {
    return control_requests_->migrate_send(request, stream_fd);
  });
  control_ = std::make_unique<ControlSocket>(config_.control_path, device_events_, *control_requests_,
                                             event_stream_.get(), migration_runner_.get());
  if (auto balloon = virtio_->balloon()) {
    balloon->set_target_reached_handler([this](uint32_t actual_pages, uint32_t target_pages) {
      constexpr uint64_t kPagesPerMib = kMiB / devices::virtio::kBalloonPageSize;
      publish_event("balloon-target-reached", {{"actual_mib", actual_pages / kPagesPerMib},
                                               {"target_mib", target_pages / kPagesPerMib},
                                               {"actual_pages", actual_pages}});
    });
  }
  log_line("control socket on " + config_.control_path);
}

void Domain::publish_event(const std::string& name, const nlohmann::json& details) {
  if (event_stream_) event_stream_->publish(name, details);
}

void Domain::on_guest_event(const devices::GuestEvent& event) {
  switch (event.kind) {
    case devices::GuestEventKind::kPowerOff:
      request_exit({DomainExitKind::kPowerOff, 0, "guest powered off"});
      break;
    case devices::GuestEventKind::kReboot:
      request_exit({DomainExitKind::kReboot, 0, "guest requested a reboot"});
      break;
    case devices::GuestEventKind::kPanic:
      request_exit({DomainExitKind::kPanic, 0, "guest kernel panicked"});
      break;
    case devices::GuestEventKind::kDebugExit:
      request_exit({DomainExitKind::kDebugExit, event.code,
                    "guest wrote " + std::to_string(event.code) + " to the debug-exit port"});
      break;
  }
}

void Domain::request_exit(DomainExit exit) {
  {
    std::lock_guard lock(exit_mutex_);
    if (exit_) return;  // the first reason wins
    exit_ = std::move(exit);
  }
  {
    // Under the pause lock, so a pause waiting for the vCPUs to park sees it.
    std::lock_guard lock(pause_mutex_);
    stopping_ = true;
  }
  pause_cv_.notify_all();
  signal_eventfd(wake_fd_.get());
}

DomainExit Domain::run(const std::function<void()>& on_ready) {
  // Blocked here (and in every vCPU thread, start_vcpu_threads): they arrive through the
  // signalfd. The kick's handler comes with the vCPU threads too.
  block_stop_signals();
  const sigset_t stop_signals = stop_signal_set();
  UniqueFd signal_fd(check_syscall(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd"));
  bool dump_state = false;
  auto take_signal = [&] {
    signalfd_siginfo info{};
    if (::read(signal_fd.get(), &info, sizeof(info)) != sizeof(info)) return false;
    dump_state = info.ssi_signo == SIGQUIT;
    request_exit({DomainExitKind::kSignal, info.ssi_signo,
                  std::string("stopped by SIG") + sigabbrev_np(static_cast<int>(info.ssi_signo))});
    return true;
  };
  // A stop signal that came while the domain was being built: stop before anything runs.
  if (take_signal()) {
    std::lock_guard lock(exit_mutex_);
    return *exit_;
  }

  started_ = std::chrono::steady_clock::now();
  // The throttle's kicks are those of a pause: immediate_exit for a vCPU about to enter
  // KVM_RUN, the signal for one in it. They only come once a migration runs, so after the
  // threads exist.
  throttle_ = std::make_unique<VcpuThrottle>(vcpus_.size(), [this](size_t vcpu) {
    vcpus_[vcpu]->set_immediate_exit(true);
    pthread_kill(threads_[vcpu]->native_handle(), kKickSignal);
  });
  // The vCPU threads first, then the loop that serves control requests: a pause request then
  // always finds every thread there to park.
  if (threads_.empty()) start_vcpu_threads();
  for (size_t i = 0; i < vcpus_.size(); ++i)
    threads_[i]->run([this, &vcpu = *vcpus_[i]] { vcpu_thread(vcpu); });
  // "ready" once the guest runs, not once its threads exist: a migration's source waits on it,
  // its guest standing still, and what "ready" sets going (the daemons' messages, the source's
  // teardown) must not take the CPU from vCPU threads that have yet to enter the guest. Looked
  // at, not woken: a wake-up from the vCPU thread could preempt it short of KVM_RUN.
  int64_t last_entered_ns = 0;
  for (const auto& counters : vcpu_counters_) {
    int64_t entered_ns;
    while ((entered_ns = counters->entered_ns.load(std::memory_order_acquire)) == 0)
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    last_entered_ns = std::max(last_entered_ns, entered_ns);
  }
  // A live migration's pause ends here: on the same host, its source's paused_at_ns (the same
  // clock) to the last vCPU's entry into the guest is the whole pause the guest saw.
  if (restored_ && !status().paused)
    log_line("vCPUs running at CLOCK_MONOTONIC " + std::to_string(last_entered_ns) + " ns");
  if (on_ready) on_ready();
  running_ = true;
  device_events_.start();
  // After the pause: each registration waits on KVM's readers.
  if (restored_) pci_->register_deferred_notifiers();

  while (!stopping_) {
    pollfd fds[3] = {{signal_fd.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}, {console_->input_fd(), POLLIN, 0}};
    int count = console_->input_fd() >= 0 ? 3 : 2;
    if (::poll(fds, static_cast<nfds_t>(count), -1) < 0) {
      if (errno == EINTR) continue;
      throw SystemError("poll", errno);
    }
    if (fds[0].revents & POLLIN) take_signal();
    if (count == 3 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) pump_console_input();
  }
  // While the device loop still runs to flush it: a supervisor hears why before the process
  // ends (and before the exit file says so too).
  publish_event("stopping", exit_report([this] {
                  std::lock_guard lock(exit_mutex_);
                  return *exit_;
                }()));
  end_migration();
  stop_vcpus();
  // Before the device loop is stopped: if it is stuck, stopping it would never return.
  if (dump_state) log_state();
  device_events_.stop();
  std::lock_guard lock(exit_mutex_);
  return *exit_;
}

void Domain::log_state() {
  log_line("state at SIGQUIT:");
  for (auto& vcpu : vcpus_) log_vcpu(*vcpu);
  for (const auto& line : pci_->describe_virtio()) log_line(line);
}

void Domain::log_vcpu(kvm::Vcpu& vcpu) {
  const std::string prefix = "vCPU " + std::to_string(vcpu.id()) + ": ";
  try {
    const kvm_regs regs = vcpu.regs();
    const kvm_sregs sregs = vcpu.sregs();
    for (const auto& line : describe_registers(regs, sregs)) log_line(prefix + line);
    log_line(prefix + describe_events(vcpu.events()));
    if (vcpu.run_state()->exit_reason == KVM_EXIT_SHUTDOWN && registers_are_reset_state(regs, sregs))
      log_line("note: these are the vCPU's reset values, not where it failed: on AMD (SVM) KVM resets a vCPU "
               "after a triple fault, since the hardware saves no state then");
  } catch (const std::exception& error) {
    log_line(prefix + "registers unavailable: " + error.what());
  }
}

void Domain::pump_console_input() {
  uint8_t buffer[512];
  ssize_t n = ::read(console_->input_fd(), buffer, sizeof(buffer));
  if (n > 0) {
    uart_->enqueue_input({buffer, static_cast<size_t>(n)});
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    console_->input_closed();
  }
}

void Domain::stop_vcpus() {
  // No kick may reach a thread once it is joined.
  if (throttle_) throttle_->set_percent(0);
  {
    std::lock_guard lock(pause_mutex_);
    stopping_ = true;
  }
  pause_cv_.notify_all();  // parked vCPUs stop too
  for (size_t i = 0; i < threads_.size(); ++i) {
    vcpus_[i]->set_immediate_exit(true);
    pthread_kill(threads_[i]->native_handle(), kKickSignal);
  }
  for (auto& thread : threads_) thread->join();  // one never given its vCPU just ends
  threads_.clear();
}

void Domain::start_vcpu_threads() {
  // A kick may come as soon as a thread exists (a stop), and the stop signals are the
  // signalfd's alone: each thread starts with them blocked.
  install_kick_handler();
  const sigset_t stop_signals = stop_signal_set();
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, &stop_signals, &mask);
  for (size_t i = 0; i < vcpus_.size(); ++i) threads_.push_back(std::make_unique<StandbyThread>());
  pthread_sigmask(SIG_SETMASK, &mask, nullptr);
}

void Domain::vcpu_thread(kvm::Vcpu& vcpu) {
  vcpu_counters_[vcpu.id()]->tid = static_cast<int>(::gettid());
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kKickSignal);
  pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);
  vcpu_counters_[vcpu.id()]->entered_ns.store(monotonic_ns(std::chrono::steady_clock::now()),
                                              std::memory_order_release);
  try {
    while (!stopping_) {
      if (pause_pending_) {
        // Entered once more with immediate_exit set, KVM completes an I/O instruction whose
        // exit was just handled and returns at once: a parked vCPU is never mid-instruction,
        // so its saved registers are whole.
        vcpu.set_immediate_exit(true);
        vcpu.run();
        park(vcpu);
        continue;
      }
      if (!vcpu.run()) {
        interrupted(vcpu);
        continue;  // look at stopping_ (and pause_pending_) again
      }
      if (!handle_exit(vcpu)) break;
    }
  } catch (const std::exception& error) {
    request_exit({DomainExitKind::kVcpuFailure, 0, "vCPU " + std::to_string(vcpu.id()) + ": " + error.what()});
  }
}

void Domain::interrupted(kvm::Vcpu& vcpu) {
  // A pause or a stop keeps its immediate_exit: the loop's top sees to it.
  if (pause_pending_ || stopping_) return;
  // Otherwise the throttle's kick: its immediate_exit is cleared, or every KVM_RUN would
  // return at once. A pause or a stop that set immediate_exit just before the clear lost it,
  // but set its flag before it: after the fence the flags are seen, by rest()'s wake or at
  // the loop's top (whose pause path sets immediate_exit again).
  vcpu.set_immediate_exit(false);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (throttle_->take_kick(vcpu.id())) throttle_->rest([this] { return pause_pending_ || stopping_; });
}

void Domain::park(kvm::Vcpu& vcpu) {
  std::unique_lock lock(pause_mutex_);
  ++parked_;
  pause_cv_.notify_all();
  pause_cv_.wait(lock, [this] { return !pause_requested_ || stopping_; });
  --parked_;
  // Cleared before the loop looks at stopping_ and pause_pending_ again: a stop or pause
  // that set it after this still finds the thread (it looks at the flags after this).
  vcpu.set_immediate_exit(false);
}

void Domain::pause_vcpus(bool announce) {
  bool newly_paused = false;
  std::unique_lock lock(pause_mutex_);
  if (stopping_) throw Error("the domain is stopping");
  if (!running_) throw Error("the domain is still starting");
  if (!pause_requested_) {
    pause_requested_ = true;
    pause_pending_ = true;
    newly_paused = true;
    // Out of KVM_RUN: immediate_exit covers a thread about to enter it, the signal one in it.
    for (size_t i = 0; i < threads_.size(); ++i) {
      vcpus_[i]->set_immediate_exit(true);
      pthread_kill(threads_[i]->native_handle(), kKickSignal);
    }
  }
  const bool all_parked =
      pause_cv_.wait_for(lock, kPauseTimeout, [this] { return parked_ == vcpus_.size() || stopping_; });
  if (stopping_) throw Error("the domain is stopping");
  if (!all_parked) {
    pause_requested_ = false;
    pause_pending_ = false;
    lock.unlock();
    pause_cv_.notify_all();
    throw Error("not every vCPU stopped within " + std::to_string(kPauseTimeout.count()) + " s; still running");
  }
  lock.unlock();
  // Then the devices' own threads: the whole domain stands still (the save's pause point).
  if (newly_paused) pci_->quiesce();
  if (!announce) return;
  log_line("paused");
  if (newly_paused) publish_event("paused");
}

void Domain::unpause_vcpus() {
  // The disks must not be written while another VMM may hold them (disk-locks hold:false).
  if (!disks_locked_)
    throw Error("the domain's disks are not locked: take their locks first ({\"op\":\"disk-locks\",\"hold\":true}); "
                "they were let go for a live migration");
  stop_dirty_logs_after_migration();
  {
    std::lock_guard lock(pause_mutex_);
    if (!pause_requested_) return;
  }
  pci_->resume();
  {
    std::lock_guard lock(pause_mutex_);
    pause_requested_ = false;
    pause_pending_ = false;
  }
  pause_cv_.notify_all();
  log_line("unpaused");
  publish_event("unpaused");
}

DomainStatus Domain::status() {
  DomainStatus status;
  status.vcpus = config_.vcpus;
  {
    std::lock_guard lock(pause_mutex_);
    status.paused = pause_requested_;
  }
  status.disks_locked = disks_locked_;
  if (running_) status.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  return status;
}

nlohmann::json Domain::stats() {
  nlohmann::json vcpus = nlohmann::json::array();
  for (size_t i = 0; i < vcpu_counters_.size(); ++i) {
    const VcpuCounters& counters = *vcpu_counters_[i];
    vcpus.push_back({{"vcpu", i},
                     {"tid", counters.tid.load()},
                     {"exits",
                      {{"io", counters.io.load()},
                       {"mmio", counters.mmio.load()},
                       {"intr", counters.intr.load()},
                       {"system_event", counters.system_event.load()},
                       {"other", counters.other.load()}}}});
  }
  nlohmann::json stats = virtio_ ? virtio_->stats() : nlohmann::json{{"disks", nlohmann::json::array()}, {"nets", nlohmann::json::array()}};
  stats["vcpus"] = vcpus;
  return stats;
}

bool Domain::handle_exit(kvm::Vcpu& vcpu) {
  kvm_run* run = vcpu.run_state();
  VcpuCounters& counters = *vcpu_counters_[vcpu.id()];
  auto& counter = run->exit_reason == KVM_EXIT_IO              ? counters.io
                  : run->exit_reason == KVM_EXIT_MMIO          ? counters.mmio
                  : run->exit_reason == KVM_EXIT_INTR          ? counters.intr
                  : run->exit_reason == KVM_EXIT_SYSTEM_EVENT ? counters.system_event
                                                               : counters.other;
  counter.fetch_add(1, std::memory_order_relaxed);
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      auto* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
      for (uint32_t i = 0; i < run->io.count; ++i) {
        std::span<uint8_t> bytes(data + i * run->io.size, run->io.size);
        if (run->io.direction == KVM_EXIT_IO_OUT)
          io_bus_.write(run->io.port, bytes);
        else
          io_bus_.read(run->io.port, bytes);
      }
      return true;
    }
    case KVM_EXIT_MMIO: {
      std::span<uint8_t> bytes(run->mmio.data, std::min<uint32_t>(run->mmio.len, sizeof(run->mmio.data)));
      if (run->mmio.is_write)
        mmio_bus_.write(run->mmio.phys_addr, bytes);
      else
        mmio_bus_.read(run->mmio.phys_addr, bytes);
      return true;
    }
    case KVM_EXIT_INTR:
      return true;
    case KVM_EXIT_SYSTEM_EVENT:
      if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
        on_guest_event({devices::GuestEventKind::kReboot});
      else if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH)
        on_guest_event({devices::GuestEventKind::kPanic});
      else
        on_guest_event({devices::GuestEventKind::kPowerOff});
      return false;
    case KVM_EXIT_DIRTY_RING_FULL:
      // The vCPU empties its own ring and runs on, rather than wait for the migration's next
      // take (DirtyRingLog says why that is safe).
      if (dirty_rings_) {
        dirty_rings_->harvest_full(vcpu.id());
        return true;
      }
      [[fallthrough]];
    default:
      fail_vcpu(vcpu, describe_failed_exit(*run));
      return false;
  }
}

void Domain::fail_vcpu(kvm::Vcpu& vcpu, const std::string& reason) {
  log_vcpu(vcpu);
  if (vcpu.run_state()->exit_reason == KVM_EXIT_INTERNAL_ERROR && host_kvm_is_pvm())
    log_line("note: this host's /dev/kvm is kvm_pvm (software-assisted nested KVM), which cannot run every "
             "ring-0 instruction; stock kernels need hardware virtualization (see scripts/test-host.sh)");
  request_exit({DomainExitKind::kVcpuFailure, 0, "vCPU " + std::to_string(vcpu.id()) + ": " + reason});
}

}  // namespace kdom::vmm
