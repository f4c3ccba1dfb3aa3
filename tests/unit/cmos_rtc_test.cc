// Tests of the CMOS RTC: time of day from an injected clock in BCD and binary, 12- and
// 24-hour form, the status registers, the NMI bit of the index port, CMOS RAM, and guest
// writes to the time registers kept as an offset from the (unchanged) host clock.
#include "devices/legacy/cmos_rtc.h"

#include <gtest/gtest.h>

namespace kdom::devices {
namespace {

constexpr time_t kNow = 1795581609;  // 2026-11-25 04:40:09 UTC, a Wednesday
constexpr time_t kHour = 3600;

enum : uint8_t {
  kSeconds = 0x00,
  kMinutes = 0x02,
  kHours = 0x04,
  kDayOfWeek = 0x06,
  kDay = 0x07,
  kMonth = 0x08,
  kYear = 0x09,
  kStatusA = 0x0a,
  kStatusB = 0x0b,
  kStatusC = 0x0c,
  kStatusD = 0x0d,
  kCentury = 0x32,
};

class Rtc : public ::testing::Test {
 protected:
  time_t host_ = kNow;
  CmosRtc rtc_{[this] { return host_; }};

  uint8_t get(uint8_t index) {
    out(0, index);
    uint8_t value = 0;
    rtc_.read(1, std::span<uint8_t>(&value, 1));
    return value;
  }
  void set(uint8_t index, uint8_t value) {
    out(0, index);
    out(1, value);
  }
  void out(uint64_t offset, uint8_t value) { rtc_.write(offset, std::span<const uint8_t>(&value, 1)); }
};

TEST_F(Rtc, ReadsTheClockInBcd) {
  EXPECT_EQ(get(kSeconds), 0x09);
  EXPECT_EQ(get(kMinutes), 0x40);
  EXPECT_EQ(get(kHours), 0x04);
  EXPECT_EQ(get(kDay), 0x25);
  EXPECT_EQ(get(kMonth), 0x11);
  EXPECT_EQ(get(kYear), 0x26);
  EXPECT_EQ(get(kCentury), 0x20);
  EXPECT_EQ(get(kDayOfWeek), 0x04);  // Sunday = 1
}

TEST_F(Rtc, FollowsTheHostClock) {
  host_ += 61;
  EXPECT_EQ(get(kSeconds), 0x10);
  EXPECT_EQ(get(kMinutes), 0x41);
}

TEST_F(Rtc, BinaryModeAfterSettingStatusBBit2) {
  EXPECT_EQ(get(kStatusB), 0x02);  // 24-hour, BCD
  set(kStatusB, 0x06);
  EXPECT_EQ(get(kStatusB), 0x06);
  EXPECT_EQ(get(kSeconds), 9);
  EXPECT_EQ(get(kMinutes), 40);
  EXPECT_EQ(get(kHours), 4);
  EXPECT_EQ(get(kDay), 25);
  EXPECT_EQ(get(kMonth), 11);
  EXPECT_EQ(get(kYear), 26);
  EXPECT_EQ(get(kCentury), 20);
}

TEST_F(Rtc, TwelveHourModeSetsThePmBit) {
  set(kStatusB, 0x00);  // BCD, 12-hour
  EXPECT_EQ(get(kHours), 0x04);  // 4 AM
  host_ = kNow + 12 * kHour;
  EXPECT_EQ(get(kHours), 0x84);  // 4 PM
  set(kStatusB, 0x04);           // binary, 12-hour
  EXPECT_EQ(get(kHours), 0x84);
}

TEST_F(Rtc, TwelveHourModeMidnightAndNoon) {
  set(kStatusB, 0x00);
  host_ = kNow - 4 * kHour;  // 00:40
  EXPECT_EQ(get(kHours), 0x12);
  host_ = kNow + 8 * kHour;  // 12:40
  EXPECT_EQ(get(kHours), 0x92);
}

TEST_F(Rtc, StatusRegisters) {
  EXPECT_EQ(get(kStatusA) & 0x80, 0) << "update in progress must read clear";
  EXPECT_EQ(get(kStatusA), 0x26);
  EXPECT_EQ(get(kStatusC), 0x00);
  EXPECT_EQ(get(kStatusD), 0x80);  // valid RAM and time
}

TEST_F(Rtc, StatusAKeepsUipClearAndStatusDIsReadOnly) {
  set(kStatusA, 0xa6);
  EXPECT_EQ(get(kStatusA), 0x26);
  set(kStatusD, 0x00);
  EXPECT_EQ(get(kStatusD), 0x80);
}

TEST_F(Rtc, IndexPortMasksTheNmiBit) {
  out(0, 0x80 | kStatusD);
  uint8_t value = 0;
  rtc_.read(1, std::span<uint8_t>(&value, 1));
  EXPECT_EQ(value, 0x80);
  out(0, 0x80 | kSeconds);
  rtc_.read(1, std::span<uint8_t>(&value, 1));
  EXPECT_EQ(value, 0x09);
}

TEST_F(Rtc, CmosRamRoundTrip) {
  set(0x40, 0x77);
  set(0x7f, 0x11);
  EXPECT_EQ(get(0x40), 0x77);
  EXPECT_EQ(get(0x7f), 0x11);
  EXPECT_EQ(get(0x41), 0x00);
}

TEST_F(Rtc, GuestSettingTheYearShiftsLaterReads) {
  set(kYear, 0x30);
  EXPECT_EQ(get(kYear), 0x30);
  EXPECT_EQ(get(kMonth), 0x11);
  EXPECT_EQ(get(kDay), 0x25);
  EXPECT_EQ(get(kHours), 0x04);
  EXPECT_EQ(get(kMinutes), 0x40);
  // The offset is kept as the host clock runs on.
  host_ += 5;
  EXPECT_EQ(get(kSeconds), 0x14);
  EXPECT_EQ(get(kYear), 0x30);
}

TEST_F(Rtc, GuestSettingTheHourKeepsTheDelta) {
  set(kHours, 0x10);  // 04:40:09 -> 10:40:09, six hours ahead
  EXPECT_EQ(get(kHours), 0x10);
  host_ += 65;
  EXPECT_EQ(get(kHours), 0x10);
  EXPECT_EQ(get(kMinutes), 0x41);
  EXPECT_EQ(get(kSeconds), 0x14);
  // A fresh RTC on the same host clock is unaffected: the host clock was not changed.
  CmosRtc other([this] { return host_; });
  uint8_t index = kHours, value = 0;
  other.write(0, std::span<const uint8_t>(&index, 1));
  other.read(1, std::span<uint8_t>(&value, 1));
  EXPECT_EQ(value, 0x04);
  EXPECT_EQ(host_, kNow + 65);
}

TEST_F(Rtc, GuestSettingTimeInBinaryMode) {
  set(kStatusB, 0x06);
  set(kMinutes, 59);
  EXPECT_EQ(get(kMinutes), 59);
  set(kStatusB, 0x02);
  EXPECT_EQ(get(kMinutes), 0x59);
}

TEST_F(Rtc, GuestSettingHourInTwelveHourMode) {
  set(kStatusB, 0x00);
  set(kHours, 0x83);  // 3 PM
  set(kStatusB, 0x02);
  EXPECT_EQ(get(kHours), 0x15);
  set(kStatusB, 0x00);
  set(kHours, 0x12);  // 12 AM
  set(kStatusB, 0x02);
  EXPECT_EQ(get(kHours), 0x00);
}

TEST_F(Rtc, GuestSettingTheCentury) {
  set(kCentury, 0x21);
  EXPECT_EQ(get(kCentury), 0x21);
  EXPECT_EQ(get(kYear), 0x26);
}

// Linux's mc146818_set_time sets SET in status B, then writes year, month, day of month,
// hours, minutes and seconds, then clears SET. On an MC146818 the registers simply take the
// written values; the date must not be normalised field by field on the way (here "February
// 31" would become March 3 and the result March 15).
TEST_F(Rtc, GuestSettingAFullDateAcrossAShortMonth) {
  host_ = 1801439999;  // 2027-01-31 23:59:59 UTC
  ASSERT_EQ(get(kDay), 0x31);
  ASSERT_EQ(get(kMonth), 0x01);
  set(kStatusB, 0x82);  // SET, 24-hour, BCD
  set(kYear, 0x27);
  set(kMonth, 0x02);
  set(kDay, 0x15);
  set(kHours, 0x12);
  set(kMinutes, 0x00);
  set(kSeconds, 0x00);
  set(kStatusB, 0x02);
  EXPECT_EQ(get(kMonth), 0x02);
  EXPECT_EQ(get(kDay), 0x15);
  EXPECT_EQ(get(kHours), 0x12);
}

}  // namespace
}  // namespace kdom::devices
