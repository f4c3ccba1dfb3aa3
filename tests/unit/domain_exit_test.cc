// Tests of the `kdom run` exit status for each way a domain stops (docs/interfaces.md).
#include "vmm/domain_exit.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "base/error.h"

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

TEST(DomainExit, StartFailureIsOne) { EXPECT_EQ(status(DomainExitKind::kStartFailure), 1); }

TEST(DomainExit, ReasonNames) {
  EXPECT_STREQ(exit_kind_name(DomainExitKind::kPowerOff), "poweroff");
  EXPECT_STREQ(exit_kind_name(DomainExitKind::kReboot), "reboot");
  EXPECT_STREQ(exit_kind_name(DomainExitKind::kPanic), "crash");
  EXPECT_STREQ(exit_kind_name(DomainExitKind::kDebugExit), "debug-exit");
  EXPECT_STREQ(exit_kind_name(DomainExitKind::kVcpuFailure), "vcpu-failure");
  EXPECT_STREQ(exit_kind_name(DomainExitKind::kSignal), "signal");
  EXPECT_STREQ(exit_kind_name(DomainExitKind::kStartFailure), "start-failure");
}

TEST(DomainExit, ReportHasReasonCodeMessageAndStatus) {
  const nlohmann::json report = exit_report({DomainExitKind::kDebugExit, 0x10, "guest wrote 16\nto the port"});
  EXPECT_EQ(report, nlohmann::json({{"reason", "debug-exit"},
                                    {"code", 16},
                                    {"message", "guest wrote 16 to the port"},
                                    {"exit_status", 0x21}}));
  EXPECT_EQ(exit_report({DomainExitKind::kSignal, SIGTERM, "stopped by SIGTERM"})["exit_status"], 143);
}

TEST(DomainExit, ExitFileIsWrittenWholeAndNoTemporaryIsLeft) {
  const auto dir = std::filesystem::temp_directory_path() / ("kdom-exit-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "exit.json").string();
  std::ofstream(path) << "stale";
  write_exit_file(path, {DomainExitKind::kStartFailure, 0, "no kernel given"});
  std::ifstream file(path);
  const nlohmann::json written = nlohmann::json::parse(file);
  EXPECT_EQ(written["reason"], "start-failure");
  EXPECT_EQ(written["message"], "no kernel given");
  EXPECT_EQ(written["exit_status"], 1);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_THROW(write_exit_file((dir / "missing" / "exit.json").string(), DomainExit{}), Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kdom::vmm
