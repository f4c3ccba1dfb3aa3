// Tests of the I/O bus: registration (overlaps and empty ranges rejected), dispatch with
// offsets relative to the device's base, and accesses no device wholly claims.
#include "devices/bus.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/error.h"

namespace kdom::devices {
namespace {

struct Access {
  bool write;
  uint64_t offset;
  size_t size;
  bool operator==(const Access&) const = default;
};

class RecordingDevice : public BusDevice {
 public:
  explicit RecordingDevice(uint8_t fill) : fill_(fill) {}
  void read(uint64_t offset, std::span<uint8_t> data) override {
    accesses.push_back({false, offset, data.size()});
    std::fill(data.begin(), data.end(), fill_);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    accesses.push_back({true, offset, data.size()});
    written.assign(data.begin(), data.end());
  }
  std::vector<Access> accesses;
  std::vector<uint8_t> written;

 private:
  uint8_t fill_;
};

class BusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bus_.add(0x3f8, 8, uart_);
    bus_.add(0x60, 5, kbd_);
  }
  Bus bus_;
  std::shared_ptr<RecordingDevice> uart_ = std::make_shared<RecordingDevice>(0x11);
  std::shared_ptr<RecordingDevice> kbd_ = std::make_shared<RecordingDevice>(0x22);
};

TEST_F(BusTest, OverlappingRangesAreRejected) {
  auto other = std::make_shared<RecordingDevice>(0);
  EXPECT_THROW(bus_.add(0x3f8, 8, other), Error);  // same range
  EXPECT_THROW(bus_.add(0x3fc, 8, other), Error);  // overlaps the end
  EXPECT_THROW(bus_.add(0x3f0, 9, other), Error);  // overlaps the start
  EXPECT_THROW(bus_.add(0x3fa, 1, other), Error);  // inside
  EXPECT_THROW(bus_.add(0x300, 0x200, other), Error);  // contains
}

TEST_F(BusTest, AdjacentRangesAreAccepted) {
  auto other = std::make_shared<RecordingDevice>(0x33);
  EXPECT_NO_THROW(bus_.add(0x3f0, 8, other));
  EXPECT_NO_THROW(bus_.add(0x400, 1, std::make_shared<RecordingDevice>(0)));
  uint8_t byte = 0;
  EXPECT_TRUE(bus_.read(0x3f7, std::span<uint8_t>(&byte, 1)));
  EXPECT_EQ(byte, 0x33);
  EXPECT_TRUE(bus_.read(0x3f8, std::span<uint8_t>(&byte, 1)));
  EXPECT_EQ(byte, 0x11);
}

TEST_F(BusTest, EmptyOrWrappingRangesAreRejected) {
  auto other = std::make_shared<RecordingDevice>(0);
  EXPECT_THROW(bus_.add(0x1000, 0, other), Error);
  EXPECT_THROW(bus_.add(UINT64_MAX - 1, 4, other), Error);
}

TEST_F(BusTest, UnclaimedReadsReturnAllOnesAndFalse) {
  uint8_t data[4] = {0, 0, 0, 0};
  EXPECT_FALSE(bus_.read(0x80, data));
  for (uint8_t byte : data) EXPECT_EQ(byte, 0xff);
  EXPECT_FALSE(bus_.read(0x3f7, std::span<uint8_t>(data, 1)));  // just below the UART
  EXPECT_FALSE(bus_.read(0x400, std::span<uint8_t>(data, 1)));  // just above
  EXPECT_FALSE(bus_.read(0, std::span<uint8_t>(data, 1)));
  EXPECT_TRUE(uart_->accesses.empty());
  EXPECT_TRUE(kbd_->accesses.empty());
}

TEST_F(BusTest, UnclaimedWritesReturnFalse) {
  const uint8_t byte = 1;
  EXPECT_FALSE(bus_.write(0x80, std::span<const uint8_t>(&byte, 1)));
  EXPECT_TRUE(uart_->accesses.empty());
}

TEST_F(BusTest, DispatchOffsetIsRelativeToTheBase) {
  uint8_t byte = 0;
  EXPECT_TRUE(bus_.read(0x3fd, std::span<uint8_t>(&byte, 1)));
  EXPECT_EQ(byte, 0x11);
  const uint8_t value = 0xfe;
  EXPECT_TRUE(bus_.write(0x64, std::span<const uint8_t>(&value, 1)));
  ASSERT_EQ(uart_->accesses.size(), 1u);
  EXPECT_EQ(uart_->accesses[0], (Access{false, 5, 1}));
  ASSERT_EQ(kbd_->accesses.size(), 1u);
  EXPECT_EQ(kbd_->accesses[0], (Access{true, 4, 1}));
  EXPECT_EQ(kbd_->written, std::vector<uint8_t>{0xfe});
}

TEST_F(BusTest, AccessEndingExactlyAtTheRangeEndIsDispatched) {
  uint8_t data[2];
  EXPECT_TRUE(bus_.read(0x3fe, data));
  EXPECT_EQ(uart_->accesses.back(), (Access{false, 6, 2}));
}

TEST_F(BusTest, AccessStraddlingTheEndIsNotDispatched) {
  uint8_t data[2] = {0, 0};
  EXPECT_FALSE(bus_.read(0x3ff, data));
  EXPECT_EQ(data[0], 0xff);
  EXPECT_EQ(data[1], 0xff);
  const uint8_t word[4] = {1, 2, 3, 4};
  EXPECT_FALSE(bus_.write(0x63, word));
  EXPECT_TRUE(uart_->accesses.empty());
  EXPECT_TRUE(kbd_->accesses.empty());
}

TEST_F(BusTest, AccessStraddlingTheStartIsNotDispatched) {
  uint8_t data[2] = {0, 0};
  EXPECT_FALSE(bus_.read(0x3f7, data));
  EXPECT_TRUE(uart_->accesses.empty());
}

}  // namespace
}  // namespace kdom::devices
