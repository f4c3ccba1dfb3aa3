// VmConfig as JSON, both ways: the one document a supervisor (kdomd) gives a VMM process
// (`kdom run --config FILE`) with the domain's whole configuration.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "vmm/vm_config.h"

namespace kdom::vmm {

nlohmann::json to_json(const VmConfig& config);
// One disk or NIC of the document (its "disks" and "nets" items), both ways: what a
// hot-plug request (control_requests.h) carries. `path` names the item in errors.
nlohmann::json to_json(const DiskConfig& disk);
nlohmann::json to_json(const NetConfig& net);
DiskConfig disk_config_from_json(const nlohmann::json& json, const std::string& path);
NetConfig net_config_from_json(const nlohmann::json& json, const std::string& path);

// Refuses unknown keys, wrong types and bad values with one line naming the key (kdom::Error);
// runs validate() on the result.
VmConfig vm_config_from_json(const nlohmann::json& json);

}  // namespace kdom::vmm
