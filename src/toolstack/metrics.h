// Metrics: kdomd's figures in the Prometheus text format (GET /metrics), from the per-domain
// statistics the supervisor gathers (GET /v1/domains/{dom}/stats): each domain's CPU time and
// memory, each vCPU's CPU time and exits by reason, each disk's requests, bytes, errors and
// latency histogram, each NIC's packets, bytes and drops, each balloon. Names and units follow
// Prometheus' conventions (checked with promtool in a test); every series has the domain's
// name and id as labels, a device's its id.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kdom::toolstack {

// `domains`: an array of Supervisor::stats() objects.
std::string prometheus_metrics(const nlohmann::json& domains);

// A label value as the text format writes it (backslash, double quote and line feed escaped).
std::string prometheus_label_value(const std::string& value);

}  // namespace kdom::toolstack
