// ControlRequests: what a running domain does for a control request, apart from how the
// request arrived. Today requests come as JSON lines over the control socket (ControlSocket);
// the daemon's HTTP API (PATCH /balloon, GET /balloon/statistics in Firecracker's terms) is to
// call the same handler. A request is a JSON object with an "op"; the reply is a JSON object
// with "ok" and either the results or "error" (one line naming the problem). Bad requests
// never throw: they get an error reply.
//
//   {"op":"balloon-set","target_mib":N}  -> {"ok":true}
//   {"op":"balloon-stats"}               -> {"ok":true,"target_mib":..,"actual_mib":..,
//                                            "stats_age_s":..,"stats":{"free_memory":..,...},
//                                            "pages_inflated":..,...}
//   {"op":"power-button"}                -> {"ok":true}: the guest's ACPI power button was
//                                            pressed (what follows is the guest's choice)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "devices/virtio/balloon.h"

namespace kdom::vmm {

class ControlRequests {
 public:
  // Presses the guest's power button; false while the domain is still being built.
  using PowerButtonPress = std::function<bool()>;

  // `balloon` may be null (the domain has none): balloon requests then get an error reply.
  ControlRequests(std::shared_ptr<devices::virtio::BalloonDevice> balloon, uint64_t memory_mib,
                  PowerButtonPress press_power_button);

  nlohmann::json handle(const nlohmann::json& request);
  // One request line (JSON text) to one reply line (JSON text, no newline).
  std::string handle_line(const std::string& line);

 private:
  nlohmann::json balloon_set(const nlohmann::json& request);
  nlohmann::json balloon_stats();

  std::shared_ptr<devices::virtio::BalloonDevice> balloon_;
  uint64_t memory_mib_;
  PowerButtonPress press_power_button_;
};

}  // namespace kdom::vmm
