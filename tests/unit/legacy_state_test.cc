// Tests of the legacy devices' saved state (UART, CMOS RTC, i8042, power button): each round
// trip into a fresh device that then behaves as the saved one would (the UART's interrupt line
// raised again, the RTC still on the host clock with the guest's offset), and hostile states
// refused with the device unchanged.
#include <gtest/gtest.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/uart8250.h"
#include "devices/power_button.h"
#include "snapshot/state_json.h"

namespace kdom::devices {
namespace {

using nlohmann::json;

class RecordingLine : public InterruptLine {
 public:
  void set_level(bool asserted) override { levels.push_back(asserted); }
  bool asserted() const { return !levels.empty() && levels.back(); }
  std::vector<bool> levels;
};

template <typename Device>
uint8_t in(Device& device, uint64_t offset) {
  uint8_t byte = 0;
  device.read(offset, std::span<uint8_t>(&byte, 1));
  return byte;
}

template <typename Device>
void out(Device& device, uint64_t offset, uint8_t value) {
  device.write(offset, std::span<const uint8_t>(&value, 1));
}

// json `state` with `key` set to `value`.
json with(json state, const std::string& key, const json& value) {
  state[key] = value;
  return state;
}

// --- UART -------------------------------------------------------------------------------------

enum : uint64_t { kThr = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kScr = 7 };

TEST(LegacyState, UartRoundTripRaisesTheLineAgain) {
  auto line = std::make_shared<RecordingLine>();
  Uart8250 saved(line, nullptr);
  out(saved, kLcr, 0x83);  // divisor latch
  out(saved, 0, 0x01);     // 115200 baud
  out(saved, kLcr, 0x03);
  out(saved, kIir, 0x01);
  out(saved, kMcr, 0x0b);
  out(saved, kScr, 0x5a);
  out(saved, kIer, 0x01);  // received-data interrupt
  const std::string typed = "ls\n";
  saved.enqueue_input({reinterpret_cast<const uint8_t*>(typed.data()), typed.size()});
  ASSERT_TRUE(line->asserted());
  const json state = saved.save_state();
  EXPECT_EQ(state["input"], "6c730a");

  auto restored_line = std::make_shared<RecordingLine>();
  Uart8250 restored(restored_line, nullptr);
  restored.load_state(json::parse(state.dump()));
  EXPECT_TRUE(restored_line->asserted()) << "the interrupt the guest has not served yet is raised again";
  EXPECT_EQ(restored.save_state(), state);
  EXPECT_EQ(in(restored, kLcr), 0x03);
  EXPECT_EQ(in(restored, kMcr), 0x0b);
  EXPECT_EQ(in(restored, kScr), 0x5a);
  EXPECT_EQ(in(restored, kIir), 0x04 | 0xc0);  // received data, FIFO enabled
  out(restored, kLcr, 0x83);
  EXPECT_EQ(in(restored, 0), 0x01);
  out(restored, kLcr, 0x03);
  EXPECT_EQ(in(restored, kThr), 'l');
  EXPECT_EQ(in(restored, kThr), 's');
  EXPECT_EQ(in(restored, kThr), '\n');
  EXPECT_EQ(in(restored, kLsr) & 0x01, 0);
  EXPECT_FALSE(restored_line->asserted());
}

TEST(LegacyState, UartLineIsLowAfterLoadingAQuietState) {
  auto line = std::make_shared<RecordingLine>();
  Uart8250 uart(line, nullptr);
  out(uart, kIer, 0x01);
  const std::string typed = "x";
  uart.enqueue_input({reinterpret_cast<const uint8_t*>(typed.data()), 1});
  ASSERT_TRUE(line->asserted());
  Uart8250 quiet(nullptr, nullptr);
  uart.load_state(quiet.save_state());
  EXPECT_FALSE(line->asserted());
}

TEST(LegacyState, UartRefusesHostileStatesUnchanged) {
  auto line = std::make_shared<RecordingLine>();
  Uart8250 uart(line, nullptr);
  out(uart, kScr, 0x77);
  const json good = uart.save_state();
  const size_t levels = line->levels.size();
  const json hostile[] = {
      json::array(),
      with(good, "ier", 0x10),
      with(good, "mcr", 0x20),
      with(good, "lcr", 256),
      with(good, "scr", -1),
      with(good, "thr_empty_interrupt", "no"),
      with(good, "input", std::string(2 * Uart8250::kInputLimit + 2, '4')),
      with(good, "input", "4g"),
  };
  for (const json& state : hostile) {
    EXPECT_THROW(uart.load_state(state), snapshot::StateError) << state.dump().substr(0, 80);
    EXPECT_EQ(uart.save_state(), good);
  }
  EXPECT_EQ(line->levels.size(), levels) << "a refused state moved the interrupt line";
}

// --- CMOS RTC ---------------------------------------------------------------------------------

constexpr time_t kHostTime = 1700000000;  // 2023-11-14 22:13:20 UTC

TEST(LegacyState, RtcRoundTripKeepsTheGuestOffsetOnTheHostClock) {
  time_t host = kHostTime;
  CmosRtc saved([&host] { return host; });
  out(saved, 0, 0x09);
  out(saved, 1, 0x30);  // the guest sets the year to 2030
  out(saved, 0, 0x40);
  out(saved, 1, 0xab);  // CMOS RAM
  out(saved, 0, 0x0b);  // status B selected
  const json state = saved.save_state();
  EXPECT_EQ(state["index"], 0x0b);
  EXPECT_EQ(state["frozen"], false);

  host += 3600;  // restored an hour later: the clock has run on
  CmosRtc restored([&host] { return host; });
  restored.load_state(json::parse(state.dump()));
  EXPECT_EQ(restored.save_state(), state);
  EXPECT_EQ(in(restored, 0), 0x0b);
  EXPECT_EQ(in(restored, 1), 0x02);  // status B: 24-hour, BCD
  out(restored, 0, 0x40);
  EXPECT_EQ(in(restored, 1), 0xab);
  out(restored, 0, 0x09);
  EXPECT_EQ(in(restored, 1), 0x30);
  out(restored, 0, 0x04);
  EXPECT_EQ(in(restored, 1), 0x23);  // 22:13 plus the hour that passed
}

TEST(LegacyState, RtcRoundTripWhileTheGuestHoldsSet) {
  time_t host = kHostTime;
  CmosRtc saved([&host] { return host; });
  out(saved, 0, 0x0b);
  out(saved, 1, 0x82);  // SET: the time registers freeze
  out(saved, 0, 0x04);
  out(saved, 1, 0x07);  // hour 7, not yet committed
  const json state = saved.save_state();
  EXPECT_EQ(state["frozen"], true);
  EXPECT_EQ(state["frozen_time"]["hour"], 7);

  CmosRtc restored([&host] { return host; });
  restored.load_state(state);
  out(restored, 0, 0x04);
  EXPECT_EQ(in(restored, 1), 0x07);
  out(restored, 0, 0x0b);
  out(restored, 1, 0x02);  // SET clears: the new time takes effect
  host += 60;
  out(restored, 0, 0x04);
  EXPECT_EQ(in(restored, 1), 0x07);
  out(restored, 0, 0x02);
  EXPECT_EQ(in(restored, 1), 0x14);  // 07:14, a minute after the frozen 07:13
}

TEST(LegacyState, RtcRefusesHostileStatesUnchanged) {
  CmosRtc rtc([] { return kHostTime; });
  out(rtc, 0, 0x41);
  out(rtc, 1, 0x99);
  const json good = rtc.save_state();
  json frozen = with(good, "frozen", true);
  frozen["frozen_time"] = {{"second", 0}, {"minute", 0}, {"hour", 0}, {"weekday", 0},
                           {"day", 1},    {"month", 1},  {"year", 2000}};
  json bad_weekday = frozen;
  bad_weekday["frozen_time"]["weekday"] = 7;
  const json hostile[] = {
      json(nullptr),
      with(good, "index", 0x80),
      with(good, "ram", "00"),
      with(good, "offset_seconds", "0"),
      with(good, "offset_seconds", 1.5),
      with(good, "offset_seconds", int64_t{1} << 50),
      with(good, "offset_seconds", -(int64_t{1} << 50)),
      with(good, "offset_seconds", UINT64_MAX),
      with(good, "frozen", true),  // without its time
      bad_weekday,
  };
  for (const json& state : hostile) {
    EXPECT_THROW(rtc.load_state(state), snapshot::StateError) << state.dump().substr(0, 80);
    EXPECT_EQ(rtc.save_state(), good);
  }
  EXPECT_NO_THROW(rtc.load_state(with(good, "offset_seconds", -86400)));
  EXPECT_NO_THROW(rtc.load_state(frozen));
}

// --- i8042 and the power button -------------------------------------------------------------

TEST(LegacyState, I8042RoundTrip) {
  I8042 saved(nullptr);
  out(saved, 4, 0x60);  // write command byte: waits for its data byte
  const json waiting = saved.save_state();
  EXPECT_EQ(waiting["pending_command"], 0x60);
  EXPECT_TRUE(waiting["output"].is_null());
  out(saved, 0, 0x45);
  out(saved, 4, 0xaa);  // self test: 0x55 waits in the output buffer
  const json state = saved.save_state();

  I8042 restored(nullptr);
  restored.load_state(state);
  EXPECT_EQ(in(restored, 4) & 0x01, 0x01);  // output full
  EXPECT_EQ(in(restored, 0), 0x55);
  out(restored, 4, 0x20);  // read command byte
  EXPECT_EQ(in(restored, 0), 0x45);

  I8042 midway(nullptr);
  midway.load_state(waiting);
  out(midway, 0, 0x47);  // the data byte of the saved command
  out(midway, 4, 0x20);
  EXPECT_EQ(in(midway, 0), 0x47);
}

TEST(LegacyState, I8042RefusesHostileStatesUnchanged) {
  I8042 controller(nullptr);
  const json good = controller.save_state();
  const json hostile[] = {
      json::object(),
      with(good, "output", 256),
      with(good, "pending_command", 0xaa),  // takes no data byte
      with(good, "command_byte", "x"),
  };
  for (const json& state : hostile) {
    EXPECT_THROW(controller.load_state(state), snapshot::StateError) << state.dump();
    EXPECT_EQ(controller.save_state(), good);
  }
}

TEST(LegacyState, PowerButtonHasNoState) {
  PowerButton button(std::make_shared<RecordingLine>());
  EXPECT_EQ(button.save_state(), json::object());
  EXPECT_NO_THROW(button.load_state(json::object()));
  EXPECT_THROW(button.load_state(json{{"pressed", true}}), snapshot::StateError);
  EXPECT_THROW(button.load_state(json::array()), snapshot::StateError);
}

}  // namespace
}  // namespace kdom::devices
