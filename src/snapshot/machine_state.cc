// Saving and loading vCPU and VM state through KVM (machine_state.h).
#include "snapshot/machine_state.h"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <span>

#include "snapshot/state_json.h"

namespace kdom::snapshot {

namespace {

constexpr uint32_t kMsrTsc = 0x10;
// KVM_GET_XSAVE2 sizes grow with new state components (AMX: 11 KiB); far below this.
constexpr size_t kMaxXsaveBytes = 64 * 1024;
constexpr size_t kMaxMsrs = 4096;

template <typename T>
std::string struct_hex(const T& value) {
  return bytes_to_hex({reinterpret_cast<const uint8_t*>(&value), sizeof(T)});
}

template <typename T>
T struct_from(const nlohmann::json& state, const std::string& key, const std::string& what) {
  static_assert(std::is_trivially_copyable_v<T>);
  auto bytes = state_bytes(state, key, what, sizeof(T));
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  return value;
}

}  // namespace

uint64_t realtime_now_ns() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

nlohmann::json save_vcpu_state(const kvm::Vcpu& vcpu, const std::vector<uint32_t>& msr_indices,
                               size_t xsave_bytes) {
  nlohmann::json msrs = nlohmann::json::array();
  for (const auto& [index, value] : vcpu.msrs(msr_indices)) msrs.push_back({index, value});
  return {{"id", vcpu.id()},
          {"mp_state", vcpu.mp_state().mp_state},
          {"regs", struct_hex(vcpu.regs())},
          {"sregs", struct_hex(vcpu.sregs())},
          {"xsave", bytes_to_hex(vcpu.xsave(xsave_bytes))},
          {"xcrs", struct_hex(vcpu.xcrs())},
          {"debugregs", struct_hex(vcpu.debugregs())},
          {"lapic", struct_hex(vcpu.lapic())},
          {"events", struct_hex(vcpu.events())},
          {"msrs", msrs},
          {"tsc_khz", vcpu.tsc_khz()}};
}

VcpuState parse_vcpu_state(const nlohmann::json& state, uint32_t id, uint64_t elapsed_ns) {
  const std::string what = "vCPU " + std::to_string(id);
  VcpuState parsed;
  parsed.id = static_cast<uint32_t>(state_u64(state, "id", what, UINT32_MAX));
  if (parsed.id != id) throw StateError("saved state of " + what + " is vCPU " + std::to_string(parsed.id) + "'s");
  parsed.mp_state.mp_state = static_cast<uint32_t>(state_u64(state, "mp_state", what, UINT32_MAX));
  parsed.regs = struct_from<kvm_regs>(state, "regs", what);
  parsed.sregs = struct_from<kvm_sregs>(state, "sregs", what);
  parsed.xsave = state_bytes_up_to(state, "xsave", what, kMaxXsaveBytes);
  if (parsed.xsave.size() < 4096) throw StateError("saved state of " + what + ": 'xsave' holds under 4096 bytes");
  parsed.xcrs = struct_from<kvm_xcrs>(state, "xcrs", what);
  parsed.debugregs = struct_from<kvm_debugregs>(state, "debugregs", what);
  parsed.lapic = struct_from<kvm_lapic_state>(state, "lapic", what);
  parsed.events = struct_from<kvm_vcpu_events>(state, "events", what);
  parsed.tsc_khz = static_cast<uint32_t>(state_u64(state, "tsc_khz", what, UINT32_MAX));
  const auto& msrs = state_array(state, "msrs", what);
  if (msrs.size() > kMaxMsrs) throw StateError("saved state of " + what + " has more than 4096 MSRs");
  for (const auto& entry : msrs) {
    auto whole = [](const nlohmann::json& value) {
      return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
    };
    if (!entry.is_array() || entry.size() != 2 || !whole(entry[0]) || !whole(entry[1]) ||
        entry[0].get<uint64_t>() > UINT32_MAX)
      throw StateError("saved state of " + what + ": an MSR entry is not [index, value]");
    parsed.msrs.emplace_back(entry[0].get<uint32_t>(), entry[1].get<uint64_t>());
  }
  // The TSC first (the TSC deadline is relative to it), moved on by the time saved.
  for (auto& [index, value] : parsed.msrs)
    if (index == kMsrTsc)
      value += static_cast<uint64_t>(static_cast<unsigned __int128>(elapsed_ns) * parsed.tsc_khz / 1000000);
  std::stable_partition(parsed.msrs.begin(), parsed.msrs.end(), [](const auto& msr) { return msr.first == kMsrTsc; });
  return parsed;
}

void load_vcpu_state(kvm::Vcpu& vcpu, const VcpuState& state) {
  if (state.tsc_khz != 0 && vcpu.tsc_khz() != state.tsc_khz) {
    try {
      vcpu.set_tsc_khz(state.tsc_khz);
    } catch (const std::exception& error) {
      throw Error("this host cannot run the guest's TSC at its saved " + std::to_string(state.tsc_khz) + " kHz (" +
                  error.what() + ")");
    }
  }
  vcpu.set_mp_state(state.mp_state);
  vcpu.set_regs(state.regs);
  vcpu.set_sregs(state.sregs);
  vcpu.set_xsave(state.xsave);
  vcpu.set_xcrs(state.xcrs);
  vcpu.set_debugregs(state.debugregs);
  vcpu.set_lapic(state.lapic);
  vcpu.set_msrs(state.msrs);
  vcpu.set_events(state.events);
}

nlohmann::json save_vm_state(const kvm::Vm& vm) {
  return {{"pic_master", struct_hex(vm.irqchip(KVM_IRQCHIP_PIC_MASTER))},
          {"pic_slave", struct_hex(vm.irqchip(KVM_IRQCHIP_PIC_SLAVE))},
          {"ioapic", struct_hex(vm.irqchip(KVM_IRQCHIP_IOAPIC))},
          {"pit", struct_hex(vm.pit())},
          {"clock_ns", vm.clock()},
          {"realtime_ns", realtime_now_ns()}};
}

VmState parse_vm_state(const nlohmann::json& state, uint64_t now_realtime_ns) {
  const std::string what = "the irqchip record";
  VmState parsed;
  parsed.pic_master = struct_from<kvm_irqchip>(state, "pic_master", what);
  parsed.pic_slave = struct_from<kvm_irqchip>(state, "pic_slave", what);
  parsed.ioapic = struct_from<kvm_irqchip>(state, "ioapic", what);
  parsed.pit = struct_from<kvm_pit_state2>(state, "pit", what);
  if (parsed.pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER || parsed.pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
      parsed.ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
    throw StateError("saved state of " + what + ": the PIC and IOAPIC states are mixed up");
  const uint64_t saved_at = state_u64(state, "realtime_ns", what);
  parsed.elapsed_ns = now_realtime_ns > saved_at ? now_realtime_ns - saved_at : 0;
  parsed.clock_ns = state_u64(state, "clock_ns", what) + parsed.elapsed_ns;
  return parsed;
}

void load_vm_state(kvm::Vm& vm, const VmState& state) {
  vm.set_irqchip(state.pic_master);
  vm.set_irqchip(state.pic_slave);
  vm.set_irqchip(state.ioapic);
  vm.set_pit(state.pit);
  vm.set_clock(state.clock_ns);
}

}  // namespace kdom::snapshot
