// Tests of the i8042 controller: the reset line (0xFE, or output port bit 0 cleared) as
// reboot events, the self test and command byte through the data port, and the status port's
// output-buffer-full bit.
#include "devices/legacy/i8042.h"

#include <gtest/gtest.h>

#include <vector>

namespace kdom::devices {
namespace {

constexpr uint64_t kData = 0;
constexpr uint64_t kCommand = 4;  // port 0x64
constexpr uint8_t kOutputFull = 0x01;

class I8042Test : public ::testing::Test {
 protected:
  std::vector<GuestEvent> events_;
  I8042 device_{[this](const GuestEvent& event) { events_.push_back(event); }};

  uint8_t in(uint64_t offset) {
    uint8_t byte = 0;
    device_.read(offset, std::span<uint8_t>(&byte, 1));
    return byte;
  }
  void out(uint64_t offset, uint8_t value) { device_.write(offset, std::span<const uint8_t>(&value, 1)); }
};

TEST_F(I8042Test, RegisteredAtPort60WithLengthFive) {
  EXPECT_EQ(I8042::kBase, 0x60u);
  EXPECT_EQ(I8042::kBase + kCommand, 0x64u);
  EXPECT_EQ(I8042::kLength, 5u);
}

TEST_F(I8042Test, PulseResetProducesExactlyOneRebootEvent) {
  out(kCommand, 0xfe);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, GuestEventKind::kReboot);
}

TEST_F(I8042Test, FeOnTheDataPortIsNotAReset) {
  out(kData, 0xfe);
  EXPECT_TRUE(events_.empty());
}

TEST_F(I8042Test, SelfTestAnswers55ThroughTheDataPort) {
  EXPECT_EQ(in(kCommand) & kOutputFull, 0);
  out(kCommand, 0xaa);
  EXPECT_EQ(in(kCommand) & kOutputFull, kOutputFull);
  EXPECT_EQ(in(kData), 0x55);
  EXPECT_EQ(in(kCommand) & kOutputFull, 0);
  EXPECT_TRUE(events_.empty());
}

TEST_F(I8042Test, StatusHasTheSystemFlag) { EXPECT_EQ(in(kCommand) & 0x04, 0x04); }

TEST_F(I8042Test, InterfaceTestsPass) {
  out(kCommand, 0xab);
  EXPECT_EQ(in(kData), 0x00);
  out(kCommand, 0xa9);
  EXPECT_EQ(in(kCommand) & kOutputFull, kOutputFull);
  EXPECT_EQ(in(kData), 0x00);
}

TEST_F(I8042Test, WriteOutputPortWithResetBitClearReboots) {
  out(kCommand, 0xd1);
  EXPECT_TRUE(events_.empty());
  out(kData, 0xfe);  // bit 0 (reset line, active low) clear
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, GuestEventKind::kReboot);
}

TEST_F(I8042Test, WriteOutputPortWithResetBitSetDoesNotReboot) {
  out(kCommand, 0xd1);
  out(kData, 0xdf);
  EXPECT_TRUE(events_.empty());
  // The pending command was consumed: a further data byte is for the keyboard.
  out(kData, 0x00);
  EXPECT_TRUE(events_.empty());
}

TEST_F(I8042Test, ReadCommandByte) {
  out(kCommand, 0x20);
  EXPECT_EQ(in(kCommand) & kOutputFull, kOutputFull);
  EXPECT_EQ(in(kData), 0x61);
}

TEST_F(I8042Test, WriteThenReadCommandByte) {
  out(kCommand, 0x60);
  out(kData, 0x45);
  out(kCommand, 0x20);
  EXPECT_EQ(in(kData), 0x45);
  EXPECT_TRUE(events_.empty());
}

TEST_F(I8042Test, OtherOffsetsReadAllOnes) {
  EXPECT_EQ(in(1), 0xff);
  EXPECT_EQ(in(2), 0xff);
  EXPECT_EQ(in(3), 0xff);
}

TEST_F(I8042Test, NoSinkMeansNoCrash) {
  I8042 device{nullptr};
  uint8_t reset = 0xfe;
  EXPECT_NO_THROW(device.write(kCommand, std::span<const uint8_t>(&reset, 1)));
}

}  // namespace
}  // namespace kdom::devices
