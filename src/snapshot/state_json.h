// Reading and writing a device's or vCPU's saved state as JSON (the body of a device record in
// the snapshot stream). A restore reads a file someone else may have written: every field is
// checked for presence, type and range, and a bad one throws StateError naming the part of the
// domain and the field, before anything is changed.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace kdom::snapshot {

class StateError : public Error {
 public:
  using Error::Error;
};

// `what` names the part ("virtio-pci xvda", "uart"); `key` the field.
const nlohmann::json& state_object(const nlohmann::json& state, const std::string& key, const std::string& what);
const nlohmann::json& state_array(const nlohmann::json& state, const std::string& key, const std::string& what);
uint64_t state_u64(const nlohmann::json& state, const std::string& key, const std::string& what,
                   uint64_t max = UINT64_MAX);
bool state_bool(const nlohmann::json& state, const std::string& key, const std::string& what);
std::string state_string(const nlohmann::json& state, const std::string& key, const std::string& what);
// Bytes are saved as a lowercase hex string. `size`: the exact byte count required; with
// `max_size` instead, any count up to it.
std::vector<uint8_t> state_bytes(const nlohmann::json& state, const std::string& key, const std::string& what,
                                 size_t size);
std::vector<uint8_t> state_bytes_up_to(const nlohmann::json& state, const std::string& key,
                                       const std::string& what, size_t max_size);
std::string bytes_to_hex(std::span<const uint8_t> bytes);

}  // namespace kdom::snapshot
