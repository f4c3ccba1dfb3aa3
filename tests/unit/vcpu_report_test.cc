// Tests of the vCPU failure report: the one-line name of a failed exit and the register dump.
#include "vmm/vcpu_report.h"

#include <gtest/gtest.h>

#include <memory>

namespace kdom::vmm {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::unique_ptr<kvm_run> run_with(uint32_t reason) {
  auto run = std::make_unique<kvm_run>();
  *run = kvm_run{};
  run->exit_reason = reason;
  return run;
}

TEST(VcpuReport, ShutdownIsATripleFault) {
  auto text = describe_failed_exit(*run_with(KVM_EXIT_SHUTDOWN));
  EXPECT_TRUE(contains(text, "triple fault")) << text;
  EXPECT_TRUE(contains(text, "KVM_EXIT_SHUTDOWN")) << text;
}

TEST(VcpuReport, EventsNameTheExceptionInterruptAndNmiInFlight) {
  kvm_vcpu_events events{};
  events.exception.injected = 1;
  events.exception.nr = 14;
  events.exception.has_error_code = 1;
  events.exception.error_code = 0x2;
  events.interrupt.injected = 1;
  events.interrupt.nr = 0x41;
  events.nmi.pending = 1;
  auto text = describe_events(events);
  EXPECT_TRUE(contains(text, "exception 14 (injected) error_code=0x2")) << text;
  EXPECT_TRUE(contains(text, "interrupt 65 (injected)")) << text;
  EXPECT_TRUE(contains(text, "nmi injected=0 pending=1")) << text;
  events.exception.has_error_code = 0;
  EXPECT_TRUE(contains(describe_events(events), "error_code=none")) << describe_events(events);
  // Nothing in flight: the stale vector numbers KVM leaves are not shown.
  events.exception.injected = 0;
  events.interrupt.injected = 0;
  text = describe_events(events);
  EXPECT_TRUE(contains(text, "exception none, interrupt none")) << text;
}

TEST(VcpuReport, RecognisesTheResetStateKvmLeavesAfterAnSvmShutdown) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  regs.rip = 0xfff0;
  sregs.cs.selector = 0xf000;
  sregs.cs.base = 0xffff0000;
  sregs.cr0 = 0x10;
  EXPECT_TRUE(registers_are_reset_state(regs, sregs));
  sregs.cr0 = 0x80050033;  // paging and protection on: a running kernel
  EXPECT_FALSE(registers_are_reset_state(regs, sregs));
  sregs.cr0 = 0x10;
  regs.rip = 0xffffffff81000000;
  EXPECT_FALSE(registers_are_reset_state(regs, sregs));
}

TEST(VcpuReport, InternalErrorEmulationFailure) {
  auto run = run_with(KVM_EXIT_INTERNAL_ERROR);
  run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  auto text = describe_failed_exit(*run);
  EXPECT_TRUE(contains(text, "emulation")) << text;
  EXPECT_TRUE(contains(text, "KVM_EXIT_INTERNAL_ERROR")) << text;
}

TEST(VcpuReport, InternalErrorOtherSuberrorIsNamedByNumber) {
  auto run = run_with(KVM_EXIT_INTERNAL_ERROR);
  run->internal.suberror = 3;
  auto text = describe_failed_exit(*run);
  EXPECT_TRUE(contains(text, "suberror 3")) << text;
  EXPECT_FALSE(contains(text, "emulation")) << text;
}

TEST(VcpuReport, FailEntryShowsTheHardwareReason) {
  auto run = run_with(KVM_EXIT_FAIL_ENTRY);
  run->fail_entry.hardware_entry_failure_reason = 0x80000021;
  auto text = describe_failed_exit(*run);
  EXPECT_TRUE(contains(text, "KVM_EXIT_FAIL_ENTRY")) << text;
  EXPECT_TRUE(contains(text, "0x80000021")) << text;
}

TEST(VcpuReport, UnexpectedExitIsNamedByNumber) {
  auto text = describe_failed_exit(*run_with(KVM_EXIT_HYPERCALL));
  EXPECT_TRUE(contains(text, std::to_string(KVM_EXIT_HYPERCALL))) << text;
}

TEST(VcpuReport, RegistersIncludeRipAndControlRegisters) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  regs.rip = 0xffffffff81000abcULL;
  regs.rsi = 0x7000;
  sregs.cr3 = 0x9000;
  sregs.cs.selector = 0x10;
  sregs.cs.l = 1;
  auto lines = describe_registers(regs, sregs);
  std::string all;
  for (const auto& line : lines) {
    EXPECT_EQ(line.find('\n'), std::string::npos);
    all += line + "\n";
  }
  EXPECT_TRUE(contains(all, "rip=ffffffff81000abc")) << all;
  EXPECT_TRUE(contains(all, "rsi=0000000000007000")) << all;
  EXPECT_TRUE(contains(all, "cr3=0000000000009000")) << all;
  EXPECT_TRUE(contains(all, "cs=0010")) << all;
}

}  // namespace
}  // namespace kdom::vmm
