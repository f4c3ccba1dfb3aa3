// Control request handling (JSON in, JSON out).
#include "vmm/control_requests.h"

#include <unistd.h>

#include <chrono>

namespace kdom::vmm {

namespace {
constexpr uint64_t kPagesPerMib = (1024 * 1024) / devices::virtio::kBalloonPageSize;

constexpr char kKnownOps[] =
    "balloon-set, balloon-stats, power-button, pause, unpause, status, stats, reboot, disk-attach, net-attach, "
    "device-detach, devices, save, disk-locks, announce, events, migrate-send, migrate-cancel";

// The migration limits' ranges: beyond them a request is more likely a mistake than a wish.
constexpr uint64_t kMaxDowntimeMs = 3'600'000;
constexpr uint64_t kMaxRounds = 1000;
constexpr uint64_t kMaxBandwidthMib = 1 << 20;

nlohmann::json error_reply(const std::string& message) { return {{"ok", false}, {"error", message}}; }

// Runs a domain action: {"ok":true}, or the one line it threw as the error.
nlohmann::json act(const std::function<void()>& action, const std::string& op) {
  if (!action) return error_reply("this domain cannot " + op);
  try {
    action();
  } catch (const std::exception& error) {
    return error_reply(op + ": " + error.what());
  }
  return {{"ok", true}};
}
}  // namespace

ControlRequests::ControlRequests(std::shared_ptr<devices::virtio::BalloonDevice> balloon, uint64_t memory_mib,
                                 PowerButtonPress press_power_button)
    : ControlRequests(std::move(balloon), memory_mib, DomainActions{std::move(press_power_button), {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}) {}

ControlRequests::ControlRequests(std::shared_ptr<devices::virtio::BalloonDevice> balloon, uint64_t memory_mib,
                                 DomainActions actions)
    : balloon_(std::move(balloon)), memory_mib_(memory_mib), actions_(std::move(actions)) {}

std::string ControlRequests::handle_line(const std::string& line) {
  nlohmann::json request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return error_reply("the request is not valid JSON").dump();
  return handle(request).dump();
}

nlohmann::json ControlRequests::handle(const nlohmann::json& request) {
  if (!request.is_object()) return error_reply("the request must be a JSON object");
  auto op = request.find("op");
  if (op == request.end() || !op->is_string()) return error_reply("the request has no \"op\" string");
  const std::string name = op->get<std::string>();
  if (name == "balloon-set" || name == "balloon-stats") {
    if (!balloon_) return error_reply("this domain has no balloon device (start it with --balloon)");
    return name == "balloon-set" ? balloon_set(request) : balloon_stats();
  }
  if (name == "power-button") {
    if (!actions_.press_power_button || !actions_.press_power_button())
      return error_reply("the domain is still starting: its power button cannot be pressed yet");
    return {{"ok", true}};
  }
  if (name == "pause") return act(actions_.pause, "pause");
  if (name == "unpause") return act(actions_.unpause, "unpause");
  if (name == "reboot") return act(actions_.reboot, "reboot");
  if (name == "status") return status();
  if (name == "stats") {
    if (!actions_.stats) return error_reply("this domain cannot report its counters");
    nlohmann::json reply;
    try {
      reply = actions_.stats();
    } catch (const std::exception& error) {
      return error_reply(std::string("stats: ") + error.what());
    }
    reply["ok"] = true;
    if (balloon_) {
      const auto counters = balloon_->counters();
      reply["balloon"] = {{"target_mib", balloon_->target_pages() / kPagesPerMib},
                          {"actual_mib", balloon_->actual_pages() / kPagesPerMib},
                          {"pages_inflated", counters.pages_inflated},
                          {"pages_deflated", counters.pages_deflated},
                          {"pages_reported", counters.pages_reported},
                          {"pages_refused", counters.pages_refused}};
    }
    return reply;
  }
  if (name == "disk-attach" || name == "net-attach" || name == "device-detach" || name == "devices") {
    if (!actions_.devices) return error_reply("this domain cannot change its devices");
    try {
      return actions_.devices(name, request);
    } catch (const std::exception& error) {
      return error_reply(name + ": " + error.what());
    }
  }
  if (name == "save") {
    if (!actions_.save) return error_reply("this domain cannot be saved");
    auto path = request.find("path");
    if (path == request.end() || !path->is_string() || path->get_ref<const std::string&>().empty())
      return error_reply("save: the request has no \"path\" string");
    std::string then = "running";
    if (auto value = request.find("then"); value != request.end()) {
      if (!value->is_string() || (*value != "running" && *value != "paused" && *value != "stop"))
        return error_reply("save: \"then\" must be \"running\", \"paused\" or \"stop\"");
      then = value->get<std::string>();
    }
    try {
      nlohmann::json toolstack = request.value("toolstack", nlohmann::json());
      if (!toolstack.is_null() && !toolstack.is_object())
        return error_reply("save: \"toolstack\" must be an object");
      nlohmann::json reply = actions_.save(path->get<std::string>(), then, toolstack);
      reply["ok"] = true;
      return reply;
    } catch (const std::exception& error) {
      return error_reply(std::string("save: ") + error.what());
    }
  }
  if (name == "disk-locks") {
    if (!actions_.disk_locks) return error_reply("this domain cannot hand its disks over");
    auto hold = request.find("hold");
    if (hold == request.end() || !hold->is_boolean())
      return error_reply("disk-locks: the request needs \"hold\": true (take the locks) or false (let them go)");
    try {
      return {{"ok", true}, {"disks", actions_.disk_locks(hold->get<bool>())}};
    } catch (const std::exception& error) {
      return error_reply(std::string("disk-locks: ") + error.what());
    }
  }
  if (name == "announce") {
    if (!actions_.announce) return error_reply("this domain cannot announce its NICs");
    try {
      return {{"ok", true}, {"nics", actions_.announce()}};
    } catch (const std::exception& error) {
      return error_reply(std::string("announce: ") + error.what());
    }
  }
  if (name == "events") return error_reply("events are a stream: ask for them on the domain's control socket");
  if (name == "migrate-send")
    return error_reply("migrate-send: the stream's fd must come with the request (SCM_RIGHTS, with the line's "
                       "first byte) on the domain's control socket");
  if (name == "migrate-cancel") {
    if (!actions_.migrate_cancel) return error_reply("this domain cannot migrate");
    try {
      return {{"ok", true}, {"cancelled", actions_.migrate_cancel()}};
    } catch (const std::exception& error) {
      return error_reply(std::string("migrate-cancel: ") + error.what());
    }
  }
  return error_reply("unknown op '" + name + "' (known: " + kKnownOps + ")");
}

nlohmann::json ControlRequests::migrate_send(const nlohmann::json& request, int stream_fd) {
  if (!actions_.migrate_send) return error_reply("this domain cannot migrate");
  if (!request.is_object()) return error_reply("the request must be a JSON object");
  MigrationOptions options;
  // A whole number within [low, high], or the default when absent.
  auto number = [&](const char* key, uint64_t low, uint64_t high, uint64_t& value) {
    auto it = request.find(key);
    if (it == request.end()) return true;
    if (!it->is_number_unsigned() || it->get<uint64_t>() < low || it->get<uint64_t>() > high) return false;
    value = it->get<uint64_t>();
    return true;
  };
  uint64_t rounds = options.max_rounds;
  if (!number("downtime_ms", 0, kMaxDowntimeMs, options.downtime_ms))
    return error_reply("migrate-send: \"downtime_ms\" must be a whole number of ms, at most " +
                       std::to_string(kMaxDowntimeMs));
  if (!number("max_rounds", 1, kMaxRounds, rounds))
    return error_reply("migrate-send: \"max_rounds\" must be a whole number from 1 to " + std::to_string(kMaxRounds));
  options.max_rounds = static_cast<uint32_t>(rounds);
  if (!number("max_bandwidth_mib", 0, kMaxBandwidthMib, options.max_bandwidth_mib))
    return error_reply("migrate-send: \"max_bandwidth_mib\" must be a whole number of MiB/s (0: no limit), at most " +
                       std::to_string(kMaxBandwidthMib));
  if (auto it = request.find("auto_converge"); it != request.end()) {
    if (!it->is_boolean()) return error_reply("migrate-send: \"auto_converge\" must be true or false");
    options.auto_converge = it->get<bool>();
  }
  if (auto it = request.find("release_disks"); it != request.end()) {
    if (!it->is_boolean()) return error_reply("migrate-send: \"release_disks\" must be true or false");
    options.release_disks = it->get<bool>();
  }
  options.toolstack = request.value("toolstack", nlohmann::json());
  if (!options.toolstack.is_null() && !options.toolstack.is_object())
    return error_reply("migrate-send: \"toolstack\" must be an object");
  try {
    nlohmann::json reply = actions_.migrate_send(stream_fd, options);
    reply["ok"] = true;
    return reply;
  } catch (const std::exception& error) {
    return error_reply(std::string("migrate-send: ") + error.what());
  }
}

nlohmann::json ControlRequests::status() {
  if (!actions_.status) return error_reply("this domain cannot report its status");
  DomainStatus domain;
  try {
    domain = actions_.status();
  } catch (const std::exception& error) {
    return error_reply(std::string("status: ") + error.what());
  }
  return {{"ok", true},
          {"pid", static_cast<int64_t>(::getpid())},
          {"state", domain.paused ? "paused" : "running"},
          {"memory_mib", memory_mib_},
          {"vcpus", domain.vcpus},
          {"uptime_s", domain.uptime_s},
          {"disks_locked", domain.disks_locked}};
}

nlohmann::json ControlRequests::balloon_set(const nlohmann::json& request) {
  auto target = request.find("target_mib");
  if (target == request.end() || !target->is_number_unsigned())
    return error_reply("balloon-set needs \"target_mib\", a whole number of MiB");
  const uint64_t mib = target->get<uint64_t>();
  if (mib > memory_mib_)
    return error_reply("balloon target " + std::to_string(mib) + " MiB is larger than guest memory (" +
                       std::to_string(memory_mib_) + " MiB)");
  if (mib * kPagesPerMib > UINT32_MAX)
    return error_reply("balloon target " + std::to_string(mib) + " MiB is beyond the device's 16 TiB limit");
  balloon_->set_target_pages(static_cast<uint32_t>(mib * kPagesPerMib));
  return {{"ok", true}};
}

nlohmann::json ControlRequests::balloon_stats() {
  const auto stats = balloon_->stats();
  const auto counters = balloon_->counters();
  nlohmann::json reply = {
      {"ok", true},
      {"target_mib", balloon_->target_pages() / kPagesPerMib},
      {"actual_mib", balloon_->actual_pages() / kPagesPerMib},
      {"actual_pages", balloon_->actual_pages()},
      {"pages_inflated", counters.pages_inflated},
      {"pages_deflated", counters.pages_deflated},
      {"pages_reported", counters.pages_reported},
      {"pages_refused", counters.pages_refused},
      {"stats", stats.values},
  };
  if (stats.updated) {
    const std::chrono::duration<double> age = std::chrono::steady_clock::now() - *stats.updated;
    reply["stats_age_s"] = age.count();
  } else {
    reply["stats_age_s"] = nullptr;
  }
  // The guest answers asynchronously: the next request sees what this one asked for.
  balloon_->request_stats();
  return reply;
}

}  // namespace kdom::vmm
