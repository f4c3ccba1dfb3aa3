// Checked reads of saved state (state_json.h).
#include "snapshot/state_json.h"

namespace kdom::snapshot {

namespace {

const nlohmann::json& field(const nlohmann::json& state, const std::string& key, const std::string& what) {
  if (!state.is_object()) throw StateError("saved state of " + what + " is not a JSON object");
  auto it = state.find(key);
  if (it == state.end()) throw StateError("saved state of " + what + " lacks '" + key + "'");
  return *it;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<uint8_t> parse_hex(const nlohmann::json& value, const std::string& key, const std::string& what) {
  if (!value.is_string()) throw StateError("saved state of " + what + ": '" + key + "' is not a hex string");
  const std::string& text = value.get_ref<const std::string&>();
  if (text.size() % 2 != 0) throw StateError("saved state of " + what + ": '" + key + "' has an odd number of hex digits");
  std::vector<uint8_t> bytes(text.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    const int high = hex_digit(text[2 * i]), low = hex_digit(text[2 * i + 1]);
    if (high < 0 || low < 0) throw StateError("saved state of " + what + ": '" + key + "' is not a hex string");
    bytes[i] = static_cast<uint8_t>(high << 4 | low);
  }
  return bytes;
}

}  // namespace

const nlohmann::json& state_object(const nlohmann::json& state, const std::string& key, const std::string& what) {
  const auto& value = field(state, key, what);
  if (!value.is_object()) throw StateError("saved state of " + what + ": '" + key + "' is not an object");
  return value;
}

const nlohmann::json& state_array(const nlohmann::json& state, const std::string& key, const std::string& what) {
  const auto& value = field(state, key, what);
  if (!value.is_array()) throw StateError("saved state of " + what + ": '" + key + "' is not an array");
  return value;
}

uint64_t state_u64(const nlohmann::json& state, const std::string& key, const std::string& what, uint64_t max) {
  const auto& value = field(state, key, what);
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<int64_t>() >= 0))
    throw StateError("saved state of " + what + ": '" + key + "' is not an unsigned integer");
  const uint64_t number = value.get<uint64_t>();
  if (number > max)
    throw StateError("saved state of " + what + ": '" + key + "' is " + std::to_string(number) + ", above " +
                     std::to_string(max));
  return number;
}

bool state_bool(const nlohmann::json& state, const std::string& key, const std::string& what) {
  const auto& value = field(state, key, what);
  if (!value.is_boolean()) throw StateError("saved state of " + what + ": '" + key + "' is not true or false");
  return value.get<bool>();
}

std::string state_string(const nlohmann::json& state, const std::string& key, const std::string& what) {
  const auto& value = field(state, key, what);
  if (!value.is_string()) throw StateError("saved state of " + what + ": '" + key + "' is not a string");
  return value.get<std::string>();
}

std::vector<uint8_t> state_bytes(const nlohmann::json& state, const std::string& key, const std::string& what,
                                 size_t size) {
  auto bytes = parse_hex(field(state, key, what), key, what);
  if (bytes.size() != size)
    throw StateError("saved state of " + what + ": '" + key + "' holds " + std::to_string(bytes.size()) +
                     " bytes, not " + std::to_string(size));
  return bytes;
}

std::vector<uint8_t> state_bytes_up_to(const nlohmann::json& state, const std::string& key,
                                       const std::string& what, size_t max_size) {
  const auto& value = field(state, key, what);
  if (value.is_string() && value.get_ref<const std::string&>().size() / 2 > max_size)
    throw StateError("saved state of " + what + ": '" + key + "' holds more than " + std::to_string(max_size) +
                     " bytes");
  return parse_hex(value, key, what);
}

std::string bytes_to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(bytes.size() * 2);
  for (uint8_t byte : bytes) {
    text += kDigits[byte >> 4];
    text += kDigits[byte & 15];
  }
  return text;
}

}  // namespace kdom::snapshot
