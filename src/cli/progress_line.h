// A long request's progress on the user's terminal (a save, a restore): while the request runs
// on a thread of its own, one line, redrawn a few times a second, says how far it has come
// ("saving web:  45% (460 of 1024 MiB)"; a migration's rounds), and is cleared when the request ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

namespace kdom::cli {

struct Progress {
  uint64_t done_bytes = 0;
  uint64_t total_bytes = 0;
};

// "LABEL: 45% (460 of 1024 MiB)"; "LABEL: starting" before the total is known.
std::string progress_line(const std::string& label, const Progress& progress);

// Runs `request` on its own thread and returns its reply (or throws what it threw). Meanwhile,
// every `interval`, asks `poll` how far it is (nullopt: nothing new, or unknown) and redraws
// the line on `terminal` with what it knows ("starting" before anything); the line is cleared
// before returning. `poll` runs on this thread; an exception from it stops the asking, not the
// request nor the line.
nlohmann::json run_showing_progress(std::ostream& terminal, const std::string& label,
                                    const std::function<nlohmann::json()>& request,
                                    const std::function<std::optional<Progress>()>& poll,
                                    std::chrono::milliseconds interval = std::chrono::milliseconds(250));

// The same for any line: `poll` gives the whole line to draw (nullopt: the last one again);
// `first_line` is drawn until it does. While the line is empty nothing is drawn (kdom migrate
// --json polls this way, printing its own lines).
nlohmann::json run_showing_line(std::ostream& terminal, const std::string& first_line,
                                const std::function<nlohmann::json()>& request,
                                const std::function<std::optional<std::string>()>& poll,
                                std::chrono::milliseconds interval = std::chrono::milliseconds(250));

// A migration's line from its job (GET /v1/domains/DOM's "job"): "LABEL: round 3, 412 MiB
// sent, 95 MiB/s, dirtying 12 MiB/s, 30 MiB left, ~35 ms pause"; "LABEL: starting" before the
// first round's figures.
std::string migration_line(const std::string& label, const nlohmann::json& job);

// A `poll` for run_showing_progress over a domain's event stream (a connection subscribed
// on its control socket, vmm::subscribe_to_events): reads what has arrived without waiting and
// returns the last save-progress event's figures, if one came.
class SaveProgressEvents {
 public:
  explicit SaveProgressEvents(int fd) : fd_(fd) {}
  std::optional<Progress> operator()();

 private:
  int fd_;
  std::string pending_;
};

}  // namespace kdom::cli
