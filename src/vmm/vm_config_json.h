// VmConfig as JSON, both ways: the one document a supervisor (kdomd) gives a VMM process
// (`kdom run --config FILE`) with the domain's whole configuration.
#pragma once

#include <nlohmann/json.hpp>

#include "vmm/vm_config.h"

namespace kdom::vmm {

nlohmann::json to_json(const VmConfig& config);

// Refuses unknown keys, wrong types and bad values with one line naming the key (kdom::Error);
// runs validate() on the result.
VmConfig vm_config_from_json(const nlohmann::json& json);

}  // namespace kdom::vmm
