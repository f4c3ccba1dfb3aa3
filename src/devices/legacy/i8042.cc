// i8042 controller commands.
#include "devices/legacy/i8042.h"

#include <string>

#include "snapshot/state_json.h"

namespace kdom::devices {

namespace {
constexpr uint64_t kDataPort = 0;
constexpr uint64_t kCommandPort = 4;
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;
constexpr uint8_t kReadCommandByte = 0x20;
constexpr uint8_t kWriteCommandByte = 0x60;
constexpr uint8_t kSelfTest = 0xaa;
constexpr uint8_t kSelfTestPassed = 0x55;
constexpr uint8_t kInterfaceTest = 0xab;
constexpr uint8_t kAuxInterfaceTest = 0xa9;
constexpr uint8_t kWriteOutputPort = 0xd1;
constexpr uint8_t kPulseResetLine = 0xfe;
}  // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (auto& byte : data) {
    if (offset == kCommandPort) {
      byte = kStatusSystemFlag | (output_ ? kStatusOutputFull : 0);
    } else if (offset == kDataPort) {
      byte = output_.value_or(0);
      output_.reset();
    } else {
      byte = 0xff;
    }
  }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (uint8_t byte : data) {
    if (offset == kCommandPort) command(byte);
    if (offset == kDataPort) data_write(byte);
  }
}

void I8042::command(uint8_t value) {
  switch (value) {
    case kReadCommandByte: output_ = command_byte_; break;
    case kWriteCommandByte:
    case kWriteOutputPort: pending_command_ = value; break;
    case kSelfTest: output_ = kSelfTestPassed; break;
    case kInterfaceTest:
    case kAuxInterfaceTest: output_ = 0x00; break;
    case kPulseResetLine:
      if (events_) events_({GuestEventKind::kReboot});
      break;
    default: break;  // enable/disable interfaces and the like: nothing to do
  }
}

void I8042::data_write(uint8_t value) {
  if (!pending_command_) return;  // bytes for the (absent) keyboard
  uint8_t command = *pending_command_;
  pending_command_.reset();
  if (command == kWriteCommandByte) command_byte_ = value;
  // Output port bit 0 is the CPU reset line, active low.
  if (command == kWriteOutputPort && (value & 0x01) == 0 && events_) events_({GuestEventKind::kReboot});
}

nlohmann::json I8042::save_state() const {
  std::lock_guard lock(mutex_);
  return {{"output", output_ ? nlohmann::json(*output_) : nlohmann::json(nullptr)},
          {"pending_command", pending_command_ ? nlohmann::json(*pending_command_) : nlohmann::json(nullptr)},
          {"command_byte", command_byte_}};
}

void I8042::load_state(const nlohmann::json& state) {
  const std::string what = "i8042";
  // A byte, or null for none.
  auto optional_byte = [&](const char* key) -> std::optional<uint8_t> {
    if (state.is_object() && state.contains(key) && state.at(key).is_null()) return std::nullopt;
    return static_cast<uint8_t>(snapshot::state_u64(state, key, what, 0xff));
  };
  const std::optional<uint8_t> output = optional_byte("output");
  const std::optional<uint8_t> pending = optional_byte("pending_command");
  if (pending && *pending != kWriteCommandByte && *pending != kWriteOutputPort)
    throw snapshot::StateError("saved state of " + what + ": 'pending_command' is " + std::to_string(*pending) +
                               ", not a command that takes a data byte");
  const auto command_byte = static_cast<uint8_t>(snapshot::state_u64(state, "command_byte", what, 0xff));
  std::lock_guard lock(mutex_);
  output_ = output;
  pending_command_ = pending;
  command_byte_ = command_byte;
}

}  // namespace kdom::devices
