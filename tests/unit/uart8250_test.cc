// Tests of the 16550A UART model: transmit to the output sink, line status, divisor latch,
// scratch register, loopback, received-data and THR-empty interrupts (IIR and the line
// level), FIFO identification and the input buffer limit.
#include "devices/legacy/uart8250.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kdom::devices {
namespace {

enum : uint64_t { kThr = 0, kIer = 1, kIir = 2, kFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };

class RecordingLine : public InterruptLine {
 public:
  void set_level(bool asserted) override { levels.push_back(asserted); }
  bool asserted() const { return !levels.empty() && levels.back(); }
  std::vector<bool> levels;
};

class Uart : public ::testing::Test {
 protected:
  std::shared_ptr<RecordingLine> line_ = std::make_shared<RecordingLine>();
  std::vector<uint8_t> output_;
  Uart8250 uart_{line_, [this](uint8_t byte) { output_.push_back(byte); }};

  uint8_t in(uint64_t offset) {
    uint8_t byte = 0;
    uart_.read(offset, std::span<uint8_t>(&byte, 1));
    return byte;
  }
  void out(uint64_t offset, uint8_t value) { uart_.write(offset, std::span<const uint8_t>(&value, 1)); }
  size_t enqueue(const std::string& text) {
    return uart_.enqueue_input(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }
};

TEST_F(Uart, ThrWritesReachTheOutput) {
  for (char c : std::string("hi\n")) out(kThr, static_cast<uint8_t>(c));
  EXPECT_EQ(output_, (std::vector<uint8_t>{'h', 'i', '\n'}));
}

TEST_F(Uart, TransmitterIsAlwaysEmpty) {
  EXPECT_EQ(in(kLsr) & 0x60, 0x60);  // THRE | TEMT
  out(kThr, 'x');
  EXPECT_EQ(in(kLsr) & 0x60, 0x60);
  EXPECT_EQ(in(kLsr) & 0x01, 0);  // no data ready
}

TEST_F(Uart, DivisorLatchSwitchesOffsetsZeroAndOne) {
  out(kIer, 0x05);
  out(kLcr, 0x83);  // DLAB, 8N1
  EXPECT_EQ(in(0), 0x0c);  // default divisor: 9600 baud
  EXPECT_EQ(in(1), 0x00);
  out(0, 0x01);  // 115200 baud
  out(1, 0x00);
  EXPECT_EQ(in(0), 0x01);
  EXPECT_EQ(in(1), 0x00);
  EXPECT_TRUE(output_.empty()) << "a divisor write must not transmit";
  out(kLcr, 0x03);
  EXPECT_EQ(in(kLcr), 0x03);
  EXPECT_EQ(in(kIer), 0x05);  // IER is back, unchanged by the divisor write
  out(kThr, 'A');
  EXPECT_EQ(output_, std::vector<uint8_t>{'A'});
}

TEST_F(Uart, ScratchRegisterRoundTrip) {
  out(kScr, 0x5a);
  EXPECT_EQ(in(kScr), 0x5a);
  out(kScr, 0xa5);
  EXPECT_EQ(in(kScr), 0xa5);
}

TEST_F(Uart, LoopbackReturnsThrBytesOnRbr) {
  out(kMcr, 0x10);
  out(kThr, 'L');
  EXPECT_TRUE(output_.empty());
  EXPECT_EQ(in(kLsr) & 0x01, 0x01);
  EXPECT_EQ(in(kThr), 'L');
  EXPECT_EQ(in(kLsr) & 0x01, 0);
}

TEST_F(Uart, LoopbackMsrMirrorsMcr) {
  out(kMcr, 0x10 | 0x0a);  // loopback, RTS, OUT2
  EXPECT_EQ(in(kMsr) & 0xf0, 0x90);  // CTS, DCD
  out(kMcr, 0x10 | 0x05);  // loopback, DTR, OUT1
  EXPECT_EQ(in(kMsr) & 0xf0, 0x60);  // DSR, RI
  out(kMcr, 0x1f);
  EXPECT_EQ(in(kMsr) & 0xf0, 0xf0);
}

TEST_F(Uart, WithoutLoopbackTheModemLooksConnected) {
  out(kMcr, 0x0b);
  EXPECT_EQ(in(kMsr) & 0xb0, 0xb0);  // DCD, DSR, CTS
}

TEST_F(Uart, ReceivedDataRaisesTheInterruptUntilDrained) {
  EXPECT_EQ(enqueue("ok"), 2u);
  EXPECT_EQ(in(kLsr) & 0x01, 0x01);
  EXPECT_FALSE(line_->asserted()) << "RDA not enabled yet";
  EXPECT_EQ(in(kIir), 0x01);

  out(kIer, 0x01);
  EXPECT_TRUE(line_->asserted());
  EXPECT_EQ(in(kIir), 0x04);
  EXPECT_EQ(in(kIir), 0x04) << "reading IIR does not acknowledge received data";
  EXPECT_EQ(in(kThr), 'o');
  EXPECT_TRUE(line_->asserted());
  EXPECT_EQ(in(kThr), 'k');
  EXPECT_FALSE(line_->asserted());
  EXPECT_EQ(in(kIir), 0x01);
  EXPECT_EQ(in(kLsr) & 0x01, 0);
  EXPECT_EQ(line_->levels, (std::vector<bool>{true, false}));
}

TEST_F(Uart, InputArrivingWithRdaEnabledAssertsTheLine) {
  out(kIer, 0x01);
  EXPECT_FALSE(line_->asserted());
  enqueue("x");
  EXPECT_TRUE(line_->asserted());
  EXPECT_EQ(in(kIir), 0x04);
}

TEST_F(Uart, EnablingThrEmptyInterruptRaisesItOnceUntilIirIsRead) {
  out(kIer, 0x02);
  EXPECT_TRUE(line_->asserted());
  EXPECT_EQ(in(kIir), 0x02);
  EXPECT_FALSE(line_->asserted());
  EXPECT_EQ(in(kIir), 0x01);
  // Each transmitted byte empties the THR again.
  out(kThr, 'z');
  EXPECT_TRUE(line_->asserted());
  EXPECT_EQ(in(kIir), 0x02);
  EXPECT_EQ(in(kIir), 0x01);
}

TEST_F(Uart, ReceivedDataTakesPriorityOverThrEmpty) {
  out(kIer, 0x03);
  enqueue("a");
  EXPECT_EQ(in(kIir), 0x04);
  in(kThr);
  EXPECT_EQ(in(kIir), 0x02);
}

TEST_F(Uart, FifoEnabledSetsIirTopBits) {
  EXPECT_EQ(in(kIir) & 0xc0, 0);
  out(kFcr, 0x01);
  EXPECT_EQ(in(kIir), 0xc1);
  out(kIer, 0x01);
  enqueue("q");
  EXPECT_EQ(in(kIir), 0xc4);
}

TEST_F(Uart, FifoClearReceiveDropsInput) {
  enqueue("abc");
  out(kFcr, 0x03);
  EXPECT_EQ(in(kLsr) & 0x01, 0);
}

TEST_F(Uart, InputLimitIsRespected) {
  std::vector<uint8_t> big(Uart8250::kInputLimit + 10, 'b');
  EXPECT_EQ(uart_.enqueue_input(big), Uart8250::kInputLimit);
  EXPECT_EQ(enqueue("c"), 0u);
  EXPECT_EQ(in(kThr), 'b');
  EXPECT_EQ(enqueue("cd"), 1u);
}

TEST_F(Uart, MultiByteAccessesActOnEachByte) {
  const uint8_t text[] = {'x', 'y'};
  uart_.write(kThr, text);
  EXPECT_EQ(output_, (std::vector<uint8_t>{'x', 'y'}));
}

}  // namespace
}  // namespace kdom::devices
