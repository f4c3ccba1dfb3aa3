// Saving a domain to the snapshot stream and loading one back (Domain::save, write_snapshot,
// restore_state): which records a save writes, in which order, and how a restore checks and
// applies them (docs/snapshot-format.md). The record-writing parts serve live migration too
// (domain_migration.cc), which writes the same records around its rounds of memory.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>

#include "base/elapsed.h"
#include "base/error.h"
#include "base/log.h"
#include "snapshot/host_facts.h"
#include "snapshot/machine_state.h"
#include "snapshot/memory_records.h"
#include "snapshot/state_json.h"
#include "vmm/domain.h"
#include "vmm/vm_config_json.h"

namespace kdom::vmm {

namespace {

// The device records' ids.
constexpr char kUartId[] = "uart";
constexpr char kRtcId[] = "rtc";
constexpr char kI8042Id[] = "i8042";
constexpr char kPowerButtonId[] = "power-button";
constexpr char kPciHotplugId[] = "pci-hotplug";
constexpr char kPciId[] = "pci";
constexpr const char* kDeviceIds[] = {kUartId, kRtcId, kI8042Id, kPowerButtonId, kPciHotplugId, kPciId};

constexpr auto kProgressInterval = std::chrono::milliseconds(200);

void write_json(snapshot::StreamWriter& writer, snapshot::RecordType type, const nlohmann::json& value) {
  const auto body = snapshot::json_body(value);
  writer.write(type, body);
}

void write_device(snapshot::StreamWriter& writer, const std::string& id, const nlohmann::json& state) {
  write_json(writer, snapshot::RecordType::kDevice, {{"id", id}, {"state", state}});
}

// "a 1.2 ms, b 0.3 ms": where a pause went.
std::string split_ms(std::initializer_list<std::pair<const char*, std::chrono::steady_clock::duration>> parts) {
  std::string text;
  for (const auto& [what, took] : parts) {
    char part[80];
    std::snprintf(part, sizeof(part), "%s%s %.1f ms", text.empty() ? "" : ", ", what,
                  std::chrono::duration<double, std::milli>(took).count());
    text += part;
  }
  return text;
}

}  // namespace

nlohmann::json Domain::save(const std::string& path, const std::string& then, const nlohmann::json& toolstack) {
  const auto started = std::chrono::steady_clock::now();
  bool was_paused;
  {
    std::lock_guard lock(pause_mutex_);
    was_paused = pause_requested_;
  }
  if (!was_paused) pause_vcpus();
  // Written beside the file and renamed once whole: a save that fails leaves no half file,
  // and a file of that name from before is kept.
  const std::string partial = path + ".partial";
  snapshot::MemoryCounts counts;
  uint64_t bytes = 0;
  try {
    UniqueFd fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) throw SystemError("cannot create '" + partial + "'", errno);
    try {
      snapshot::StreamWriter writer(fd.get(), path);
      counts = write_snapshot(writer, toolstack);
      bytes = writer.bytes_written();
      if (::fsync(fd.get()) != 0) throw SystemError("cannot write '" + partial + "'", errno);
      if (::rename(partial.c_str(), path.c_str()) != 0)
        throw SystemError("cannot rename '" + partial + "' to '" + path + "'", errno);
    } catch (...) {
      ::unlink(partial.c_str());
      throw;
    }
  } catch (const std::exception& error) {
    if (!was_paused) unpause_vcpus();
    log_line(std::string("save to ") + path + " failed: " + error.what());
    throw Error(std::string(error.what()) + (was_paused ? "; the domain stays paused" : "; the domain runs on"));
  }
  const double downtime = seconds_since(started);
  if (then == "running" && !was_paused) unpause_vcpus();
  if (then == "stop") request_exit({DomainExitKind::kSaved, 0, "saved to " + path});
  log_line("saved to " + path + ": " + std::to_string(bytes) + " bytes, " + std::to_string(counts.pages_written) +
           " pages (" + std::to_string(counts.zero_pages_skipped) + " zero pages skipped)");
  return {{"bytes", bytes},
          {"pages", counts.pages_written},
          {"zero_pages", counts.zero_pages_skipped},
          {"seconds", seconds_since(started)},
          {"downtime_s", was_paused ? 0.0 : downtime}};
}

snapshot::MemoryCounts Domain::write_snapshot(snapshot::StreamWriter& writer, const nlohmann::json& toolstack) {
  // First: it finishes ejects the guest has made, so the bus and config below are without them.
  const DeviceStates states = save_device_states();
  write_head_records(writer, current_config(), toolstack);
  // For whoever shows the save's progress (kdom save on a terminal): a few events a second.
  std::chrono::steady_clock::time_point last_event;  // the first comes at once
  const auto counts = snapshot::write_memory(writer, *memory_, [&](uint64_t done, uint64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (done != total && now - last_event < kProgressInterval) return;
    last_event = now;
    publish_event("save-progress", {{"done_bytes", done}, {"total_bytes", total}});
  });
  write_state_records(writer, states);
  return counts;
}

VmConfig Domain::current_config() const {
  VmConfig current = config_;
  virtio_->current_disks_and_nets(current);
  return current;
}

void Domain::write_head_records(snapshot::StreamWriter& writer, const VmConfig& vm, const nlohmann::json& toolstack) {
  using snapshot::RecordType;
  write_json(writer, RecordType::kHostFacts, snapshot::host_facts(KDOM_VERSION, guest_cpuid_));
  write_json(writer, RecordType::kConfig,
             {{"vm", to_json(vm)}, {"toolstack", toolstack}, {"pci_slots", pci_->slot_ids()}});
}

Domain::DeviceStates Domain::save_device_states() {
  DeviceStates states;
  states.hotplug = hotplug_->save_state();  // first: see DeviceHotplug::save_state
  states.pci = pci_->save_state();
  return states;
}

void Domain::write_state_records(snapshot::StreamWriter& writer, const DeviceStates& states) {
  using snapshot::RecordType;
  for (const auto& vcpu : vcpus_)
    write_json(writer, RecordType::kVcpu, snapshot::save_vcpu_state(*vcpu, saved_msr_indices_, saved_xsave_bytes_));
  write_json(writer, RecordType::kIrqchip, snapshot::save_vm_state(*vm_));
  write_device(writer, kUartId, uart_->save_state());
  write_device(writer, kRtcId, rtc_->save_state());
  write_device(writer, kI8042Id, i8042_->save_state());
  write_device(writer, kPowerButtonId, power_button_->save_state());
  write_device(writer, kPciHotplugId, states.hotplug);
  write_device(writer, kPciId, states.pci);
  writer.finish();
}

void Domain::restore_state(snapshot::SnapshotSource& source) {
  using snapshot::RecordType;
  using snapshot::StateError;
  // The virtio devices on their saved slots, every MSI-X route held for one table once the
  // devices are loaded. Where the config record has the slots (kdom's streams since
  // 2026-12-07), at once, while the memory streams in: out of a live migration's pause.
  auto place_devices = [&](const std::map<std::string, int>& slots) {
    msi_->hold();
    virtio_->attach(*pci_, slots);
  };
  std::optional<std::map<std::string, int>> placed_early;
  if (!source.pci_slots().is_null()) {
    placed_early = PciDevices::saved_slots(source.pci_slots());
    place_devices(*placed_early);
  }
  std::map<uint32_t, nlohmann::json> vcpu_states;
  std::optional<nlohmann::json> vm_state;
  std::map<std::string, nlohmann::json> device_states;
  uint64_t pages = 0, zero_pages = 0;
  // Memory goes straight from the file into guest RAM (no vCPU runs yet); the rest is small
  // and is checked whole before any of it is applied.
  auto& reader = source.reader();
  while (const auto head = reader.next_head()) {
    if (head->type == RecordType::kMemory) {
      pages += snapshot::load_memory_record(reader, *head, *memory_);
      continue;
    }
    if (head->type == RecordType::kZeroMemory) {  // a migration stream's: pages that became zero
      zero_pages += snapshot::load_zero_memory_record(reader, *head, *memory_);
      continue;
    }
    snapshot::Record record{head->type, std::vector<uint8_t>(head->length)};
    reader.read_body(record.body);
    reader.end_body();
    if (record.type == RecordType::kEnd) break;
    switch (record.type) {
      case RecordType::kVcpu: {
        auto state = snapshot::parse_json_body(record, "vcpu");
        const auto id = static_cast<uint32_t>(snapshot::state_u64(state, "id", "a vCPU record", UINT32_MAX));
        if (id >= config_.vcpus)
          throw StateError("the snapshot has vCPU " + std::to_string(id) + " but its config only " +
                           std::to_string(config_.vcpus));
        if (!vcpu_states.emplace(id, std::move(state)).second)
          throw StateError("the snapshot has vCPU " + std::to_string(id) + " twice");
        break;
      }
      case RecordType::kIrqchip:
        if (vm_state) throw StateError("the snapshot has two irqchip records");
        vm_state = snapshot::parse_json_body(record, "irqchip");
        break;
      case RecordType::kDevice: {
        auto body = snapshot::parse_json_body(record, "device");
        const std::string id = snapshot::state_string(body, "id", "a device record");
        const auto& state = snapshot::state_object(body, "state", "device '" + id + "'");
        if (std::find(std::begin(kDeviceIds), std::end(kDeviceIds), id) == std::end(kDeviceIds))
          throw StateError("the snapshot has a device '" + id + "' kdom does not know");
        if (!device_states.emplace(id, state).second)
          throw StateError("the snapshot has device '" + id + "' twice");
        break;
      }
      default:
        throw StateError("snapshot '" + source.name() + "' has a second " +
                         snapshot::record_type_name(static_cast<uint32_t>(record.type)) + " record");
    }
  }
  if (vcpu_states.size() != config_.vcpus)
    throw StateError("the snapshot has " + std::to_string(vcpu_states.size()) + " vCPU records for " +
                     std::to_string(config_.vcpus) + " vCPUs");
  if (!vm_state) throw StateError("the snapshot has no irqchip record");
  for (const char* id : kDeviceIds)
    if (!device_states.count(id)) throw StateError(std::string("the snapshot has no state for device '") + id + "'");

  // From here on a live migration's guest stands still at both ends: the time is logged.
  using Clock = std::chrono::steady_clock;
  const auto applying = Clock::now();
  const nlohmann::json& pci_state = device_states[kPciId];
  const auto saved_slots = PciDevices::saved_slots(pci_state);
  if (!placed_early) {
    place_devices(saved_slots);
  } else if (saved_slots != *placed_early) {
    throw StateError("the PCI bus in '" + source.name() +
                     "' is not the one its config record gave (a device came or went while it was written)");
  }
  const auto attached = Clock::now();
  // Every record is checked before KVM or a device is given any of it.
  const auto machine = snapshot::parse_vm_state(*vm_state, snapshot::realtime_now_ns());
  std::vector<snapshot::VcpuState> vcpus;
  for (uint32_t id = 0; id < config_.vcpus; ++id)
    vcpus.push_back(snapshot::parse_vcpu_state(vcpu_states[id], id, machine.elapsed_ns));
  const auto checked = Clock::now();
  snapshot::load_vm_state(*vm_, machine);
  for (auto& vcpu : vcpus_) snapshot::load_vcpu_state(*vcpu, vcpus[vcpu->id()]);
  const auto machine_loaded = Clock::now();
  uart_->load_state(device_states[kUartId]);
  rtc_->load_state(device_states[kRtcId]);
  i8042_->load_state(device_states[kI8042Id]);
  power_button_->load_state(device_states[kPowerButtonId]);
  hotplug_->load_state(device_states[kPciHotplugId]);
  const auto small_devices_loaded = Clock::now();
  pci_->load_state(pci_state);
  const auto pci_loaded = Clock::now();
  msi_->install_held();
  log_line("loaded " + std::to_string(pages) + " pages of guest RAM" +
           (zero_pages ? " (" + std::to_string(zero_pages) + " zeroed)" : std::string()) + "; " +
           std::to_string(machine.elapsed_ns / 1000000) + " ms since the save; the state applied in " +
           std::to_string(static_cast<int>(seconds_since(applying) * 1000.0)) + " ms (" +
           split_ms({{"devices attached", attached - applying},
                     {"records checked", checked - attached},
                     {"vCPUs and irqchip", machine_loaded - checked},
                     {"small devices", small_devices_loaded - machine_loaded},
                     {"PCI devices", pci_loaded - small_devices_loaded},
                     {"interrupt routes", Clock::now() - pci_loaded}}) +
           ")");
}

}  // namespace kdom::vmm
