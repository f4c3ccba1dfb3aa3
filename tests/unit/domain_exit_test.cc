// Tests of the `kdom run` exit status for each way a domain stops (docs/interfaces.md).
#include "vmm/domain_exit.h"

#include <gtest/gtest.h>

#include <csignal>

namespace kdom::vmm {
namespace {

int status(DomainExitKind kind, uint32_t code = 0) { return exit_status(DomainExit{kind, code, ""}); }

TEST(DomainExit, PowerOffIsZero) { EXPECT_EQ(status(DomainExitKind::kPowerOff), 0); }

TEST(DomainExit, RebootIsTwo) { EXPECT_EQ(status(DomainExitKind::kReboot), 2); }

TEST(DomainExit, PanicIsThree) { EXPECT_EQ(status(DomainExitKind::kPanic), 3); }

TEST(DomainExit, VcpuFailureIsOne) { EXPECT_EQ(status(DomainExitKind::kVcpuFailure), 1); }

TEST(DomainExit, DebugExitIsCodeShiftedWithLowBitSet) {
  EXPECT_EQ(status(DomainExitKind::kDebugExit, 0), 1);
  EXPECT_EQ(status(DomainExitKind::kDebugExit, 0x10), 0x21);
  EXPECT_EQ(status(DomainExitKind::kDebugExit, 0x2a), 85);
  EXPECT_EQ(status(DomainExitKind::kDebugExit, 0x7f), 255);
}

TEST(DomainExit, DebugExitUsesOnlyTheWrittenByte) {
  EXPECT_EQ(status(DomainExitKind::kDebugExit, 0x12a), status(DomainExitKind::kDebugExit, 0x2a));
}

TEST(DomainExit, SignalIs128PlusTheSignal) {
  EXPECT_EQ(status(DomainExitKind::kSignal, SIGINT), 130);
  EXPECT_EQ(status(DomainExitKind::kSignal, SIGTERM), 143);
}

TEST(DomainExit, DefaultIsPowerOff) { EXPECT_EQ(exit_status(DomainExit{}), 0); }

}  // namespace
}  // namespace kdom::vmm
