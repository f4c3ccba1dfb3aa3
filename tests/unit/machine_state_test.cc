// The vCPU and VM state records of a snapshot: read back and checked without KVM (a file from
// elsewhere is untrusted), the TSC and KVM clock moved on by the time since the save.
#include "snapshot/machine_state.h"

#include <gtest/gtest.h>

#include <cstring>

#include "snapshot/state_json.h"

namespace kdom::snapshot {
namespace {

template <typename T>
std::string hex_of(const T& value) {
  return bytes_to_hex({reinterpret_cast<const uint8_t*>(&value), sizeof(T)});
}

nlohmann::json saved_vcpu(uint32_t id) {
  kvm_regs regs{};
  regs.rip = 0xffffffff81000000ull;
  regs.rax = 42;
  kvm_sregs sregs{};
  sregs.cr3 = 0x1000;
  kvm_lapic_state lapic{};
  lapic.regs[0x20] = 7;
  std::vector<uint8_t> xsave(4096, 0);
  xsave[0] = 0x7f;
  return {{"id", id},
          {"mp_state", KVM_MP_STATE_RUNNABLE},
          {"regs", hex_of(regs)},
          {"sregs", hex_of(sregs)},
          {"xsave", bytes_to_hex(xsave)},
          {"xcrs", hex_of(kvm_xcrs{})},
          {"debugregs", hex_of(kvm_debugregs{})},
          {"lapic", hex_of(lapic)},
          {"events", hex_of(kvm_vcpu_events{})},
          {"msrs", {{0x4b564d01, 0x12345}, {0x10, 1000}, {0x6e0, 0}}},
          {"tsc_khz", 2000000}};
}

TEST(MachineStateTest, AVcpuStateIsReadBackWhole) {
  const auto state = parse_vcpu_state(saved_vcpu(1), 1, 0);
  EXPECT_EQ(state.id, 1u);
  EXPECT_EQ(state.regs.rip, 0xffffffff81000000ull);
  EXPECT_EQ(state.regs.rax, 42u);
  EXPECT_EQ(state.sregs.cr3, 0x1000u);
  EXPECT_EQ(state.lapic.regs[0x20], 7);
  EXPECT_EQ(state.xsave.size(), 4096u);
  EXPECT_EQ(state.xsave[0], 0x7f);
  EXPECT_EQ(state.mp_state.mp_state, static_cast<uint32_t>(KVM_MP_STATE_RUNNABLE));
  EXPECT_EQ(state.tsc_khz, 2000000u);
  ASSERT_EQ(state.msrs.size(), 3u);
}

TEST(MachineStateTest, TheTscComesFirstAndMovesOnByTheTimeSaved) {
  // 2 GHz, 1.5 s since the save: 3e9 cycles more.
  const auto state = parse_vcpu_state(saved_vcpu(0), 0, 1500000000ull);
  ASSERT_EQ(state.msrs.size(), 3u);
  EXPECT_EQ(state.msrs[0].first, 0x10u);
  EXPECT_EQ(state.msrs[0].second, 1000u + 3000000000ull);
  EXPECT_EQ(state.msrs[1], (std::pair<uint32_t, uint64_t>{0x4b564d01, 0x12345}));
  EXPECT_EQ(state.msrs[2].first, 0x6e0u);
}

TEST(MachineStateTest, ABadVcpuStateIsRefusedNamingTheField) {
  auto expect_refused = [](nlohmann::json state, const std::string& text) {
    try {
      parse_vcpu_state(state, 0, 0);
      FAIL() << "accepted: " << text;
    } catch (const StateError& error) {
      EXPECT_NE(std::string(error.what()).find(text), std::string::npos) << error.what();
    }
  };
  expect_refused(saved_vcpu(1), "is vCPU 1's");
  auto state = saved_vcpu(0);
  state.erase("sregs");
  expect_refused(state, "lacks 'sregs'");
  state = saved_vcpu(0);
  state["regs"] = state["regs"].get<std::string>().substr(2);
  expect_refused(state, "'regs' holds");
  state = saved_vcpu(0);
  state["lapic"] = std::string(2 * sizeof(kvm_lapic_state), 'z');
  expect_refused(state, "'lapic' is not a hex string");
  state = saved_vcpu(0);
  state["xsave"] = bytes_to_hex(std::vector<uint8_t>(1024));
  expect_refused(state, "under 4096 bytes");
  state = saved_vcpu(0);
  state["xsave"] = bytes_to_hex(std::vector<uint8_t>(128 * 1024));
  expect_refused(state, "more than");
  state = saved_vcpu(0);
  state["msrs"] = {{0x10}};
  expect_refused(state, "not [index, value]");
  state = saved_vcpu(0);
  state["msrs"] = {{uint64_t{1} << 40, 1}};
  expect_refused(state, "not [index, value]");
  state = saved_vcpu(0);
  state["msrs"] = nlohmann::json::array();
  for (int i = 0; i < 5000; ++i) state["msrs"].push_back({i, 0});
  expect_refused(state, "more than 4096 MSRs");
  state = saved_vcpu(0);
  state["tsc_khz"] = -5;
  expect_refused(state, "'tsc_khz' is not an unsigned integer");
  expect_refused(nlohmann::json::array(), "not a JSON object");
}

nlohmann::json saved_vm(uint64_t realtime_ns) {
  kvm_irqchip master{}, slave{}, ioapic{};
  master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  ioapic.chip.ioapic.base_address = 0xfec00000;
  kvm_pit_state2 pit{};
  pit.channels[0].count = 0x1234;
  return {{"pic_master", hex_of(master)}, {"pic_slave", hex_of(slave)}, {"ioapic", hex_of(ioapic)},
          {"pit", hex_of(pit)},           {"clock_ns", 5000000000ull},    {"realtime_ns", realtime_ns}};
}

TEST(MachineStateTest, TheVmStateIsReadBackAndTheClockMovesOn) {
  const auto state = parse_vm_state(saved_vm(1000), 1000 + 2500000000ull);
  EXPECT_EQ(state.ioapic.chip.ioapic.base_address, 0xfec00000u);
  EXPECT_EQ(state.pit.channels[0].count, 0x1234u);
  EXPECT_EQ(state.elapsed_ns, 2500000000ull);
  EXPECT_EQ(state.clock_ns, 7500000000ull);
  // A host clock behind the saving one's: the guest's clock does not go back.
  const auto behind = parse_vm_state(saved_vm(9000000000ull), 1000);
  EXPECT_EQ(behind.elapsed_ns, 0u);
  EXPECT_EQ(behind.clock_ns, 5000000000ull);
}

TEST(MachineStateTest, ABadVmStateIsRefused) {
  auto state = saved_vm(0);
  std::swap(state["pic_master"], state["ioapic"]);
  EXPECT_THROW(parse_vm_state(state, 0), StateError);
  state = saved_vm(0);
  state.erase("pit");
  EXPECT_THROW(parse_vm_state(state, 0), StateError);
  state = saved_vm(0);
  state["clock_ns"] = "soon";
  EXPECT_THROW(parse_vm_state(state, 0), StateError);
}

}  // namespace
}  // namespace kdom::snapshot
