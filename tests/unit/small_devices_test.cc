// Tests of the one-port devices: debug exit (exit code events), pvpanic (panic events and the
// supported-events read), ACPI sleep control (power off only for SLP_EN with the S5 sleep
// type), the boot timer (reports the value written) and the power button (one edge a press).
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "arch/x86/acpi_tables.h"
#include "devices/legacy/acpi_sleep.h"
#include "devices/legacy/boot_timer.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/pvpanic.h"
#include "devices/power_button.h"

namespace kdom::devices {
namespace {

struct Events {
  std::vector<GuestEvent> seen;
  GuestEventSink sink() {
    return [this](const GuestEvent& event) { seen.push_back(event); };
  }
};

void out(BusDevice& device, uint64_t offset, uint8_t value) {
  device.write(offset, std::span<const uint8_t>(&value, 1));
}
uint8_t in(BusDevice& device, uint64_t offset) {
  uint8_t value = 0x5a;
  device.read(offset, std::span<uint8_t>(&value, 1));
  return value;
}

TEST(DebugExit, WriteProducesAnExitEventWithTheByte) {
  Events events;
  DebugExit device(events.sink());
  out(device, 0, 0x2a);
  ASSERT_EQ(events.seen.size(), 1u);
  EXPECT_EQ(events.seen[0].kind, GuestEventKind::kDebugExit);
  EXPECT_EQ(events.seen[0].code, 0x2au);
}

TEST(DebugExit, OnlyTheFirstByteOfAWiderWriteCounts) {
  Events events;
  DebugExit device(events.sink());
  const uint8_t word[] = {0x03, 0x01, 0x00, 0x00};
  device.write(0, word);
  ASSERT_EQ(events.seen.size(), 1u);
  EXPECT_EQ(events.seen[0].code, 0x03u);
}

TEST(DebugExit, EmptyWriteDoesNothingAndReadsAreAllOnes) {
  Events events;
  DebugExit device(events.sink());
  device.write(0, std::span<const uint8_t>());
  EXPECT_TRUE(events.seen.empty());
  EXPECT_EQ(in(device, 0), 0xff);
  EXPECT_EQ(DebugExit::kBase, 0xf4u);
}

TEST(PvPanic, PanicBitProducesAPanicEvent) {
  Events events;
  PvPanic device(events.sink());
  out(device, 0, PvPanic::kPanicked);
  ASSERT_EQ(events.seen.size(), 1u);
  EXPECT_EQ(events.seen[0].kind, GuestEventKind::kPanic);
  EXPECT_EQ(PvPanic::kBase, 0x505u);
}

TEST(PvPanic, CrashLoadedAloneIsNotAPanic) {
  Events events;
  PvPanic device(events.sink());
  out(device, 0, PvPanic::kCrashLoaded);
  out(device, 0, 0);
  EXPECT_TRUE(events.seen.empty());
}

TEST(PvPanic, ReadReportsSupportedEvents) {
  Events events;
  PvPanic device(events.sink());
  EXPECT_EQ(in(device, 0), 0x03);
}

class AcpiSleepTest : public ::testing::Test {
 protected:
  Events events_;
  AcpiSleep device_{x86::kAcpiS5SleepType, events_.sink()};
  static uint8_t control(uint8_t sleep_type, bool enable) {
    return static_cast<uint8_t>((sleep_type << 2) | (enable ? AcpiSleep::kSleepEnable : 0));
  }
};

TEST_F(AcpiSleepTest, SlpEnWithS5PowersOff) {
  out(device_, 0, control(x86::kAcpiS5SleepType, true));
  ASSERT_EQ(events_.seen.size(), 1u);
  EXPECT_EQ(events_.seen[0].kind, GuestEventKind::kPowerOff);
}

TEST_F(AcpiSleepTest, WithoutSlpEnNothingHappens) {
  out(device_, 0, control(x86::kAcpiS5SleepType, false));
  EXPECT_TRUE(events_.seen.empty());
}

TEST_F(AcpiSleepTest, OtherSleepTypesAreIgnored) {
  for (uint8_t type = 0; type < 8; ++type) {
    if (type == x86::kAcpiS5SleepType) continue;
    out(device_, 0, control(type, true));
  }
  EXPECT_TRUE(events_.seen.empty());
}

TEST_F(AcpiSleepTest, StatusRegisterWritesAreIgnored) {
  out(device_, 1, control(x86::kAcpiS5SleepType, true));
  EXPECT_TRUE(events_.seen.empty());
  EXPECT_EQ(in(device_, 0), 0);
  EXPECT_EQ(in(device_, 1), 0);
}

TEST_F(AcpiSleepTest, PortsMatchTheAcpiTables) {
  x86::AcpiConfig config;
  EXPECT_EQ(AcpiSleep::kBase, config.sleep_control_port);
  EXPECT_EQ(AcpiSleep::kBase + 1, config.sleep_status_port);
}

TEST(BootTimer, WriteReportsTheValue) {
  std::vector<uint8_t> reported;
  BootTimer device([&](uint8_t value) { reported.push_back(value); });
  out(device, 0, 0x42);
  out(device, 0, 0x00);
  EXPECT_EQ(reported, (std::vector<uint8_t>{0x42, 0x00}));
  EXPECT_EQ(in(device, 0), 0);
  EXPECT_EQ(BootTimer::kBase, 0x440u);
}

class LevelLog : public InterruptLine {
 public:
  void set_level(bool asserted) override { levels.push_back(asserted); }
  std::vector<bool> levels;
};

TEST(PowerButton, EachPressIsOneRisingAndOneFallingEdge) {
  auto line = std::make_shared<LevelLog>();
  PowerButton button(line);
  EXPECT_TRUE(line->levels.empty());
  button.press();
  EXPECT_EQ(line->levels, (std::vector<bool>{true, false}));
  button.press();
  EXPECT_EQ(line->levels, (std::vector<bool>{true, false, true, false}));
}

}  // namespace
}  // namespace kdom::devices
