// The progress line, and the thread that runs the request meanwhile.
#include "cli/progress_line.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <future>

namespace kdom::cli {

namespace {

constexpr uint64_t kMiB = 1024 * 1024;
// Erases the line the cursor is on ("\r" then ANSI "erase to end of line").
constexpr char kClearLine[] = "\r\033[K";

}  // namespace

std::string progress_line(const std::string& label, const Progress& progress) {
  if (progress.total_bytes == 0) return label + ": starting";
  const uint64_t done = std::min(progress.done_bytes, progress.total_bytes);
  char text[96];
  std::snprintf(text, sizeof(text), ": %3u%% (%llu of %llu MiB)", static_cast<unsigned>(done * 100 / progress.total_bytes),
                static_cast<unsigned long long>(done / kMiB), static_cast<unsigned long long>(progress.total_bytes / kMiB));
  return label + text;
}

std::string migration_line(const std::string& label, const nlohmann::json& job) {
  if (!job.is_object() || job.value("round", uint64_t{0}) == 0) return label + ": starting";
  const auto mib = [&](const char* key) { return static_cast<double>(job.value(key, uint64_t{0})) / kMiB; };
  char text[200];
  if (job.value("phase", "") != "precopy") {
    std::snprintf(text, sizeof(text), ": round %llu, %.0f MiB sent; paused for the last round",
                  static_cast<unsigned long long>(job.value("round", uint64_t{0})), mib("sent_bytes"));
  } else {
    std::snprintf(text, sizeof(text), ": round %llu, %.0f MiB sent, %.0f MiB/s, dirtying %.0f MiB/s, %.0f MiB left, ~%.0f ms pause",
                  static_cast<unsigned long long>(job.value("round", uint64_t{0})), mib("sent_bytes"),
                  mib("rate_bytes_per_s"), mib("dirty_bytes_per_s"), mib("remaining_bytes"),
                  job.value("expected_downtime_ms", 0.0));
  }
  std::string line = label + text;
  if (const uint64_t throttle = job.value("throttle_percent", uint64_t{0}); throttle > 0)
    line += ", vCPUs throttled " + std::to_string(throttle) + "%";
  return line;
}

nlohmann::json run_showing_line(std::ostream& terminal, const std::string& first_line,
                                const std::function<nlohmann::json()>& request,
                                const std::function<std::optional<std::string>()>& poll,
                                std::chrono::milliseconds interval) {
  auto reply = std::async(std::launch::async, request);
  bool polling = true, drawn = false;
  std::string line = first_line;
  while (reply.wait_for(interval) != std::future_status::ready) {
    try {
      if (polling)
        if (auto latest = poll()) line = std::move(*latest);
    } catch (const std::exception&) {
      polling = false;  // the figures are a nicety; the request's own reply is what counts
    }
    if (line.empty()) continue;  // nothing to show (yet): the terminal is left alone
    terminal << kClearLine << line << std::flush;
    drawn = true;
  }
  if (drawn) terminal << kClearLine << std::flush;
  return reply.get();
}

nlohmann::json run_showing_progress(std::ostream& terminal, const std::string& label,
                                    const std::function<nlohmann::json()>& request,
                                    const std::function<std::optional<Progress>()>& poll,
                                    std::chrono::milliseconds interval) {
  return run_showing_line(
      terminal, progress_line(label, Progress{}), request,
      [&]() -> std::optional<std::string> {
        const auto progress = poll();
        if (!progress) return std::nullopt;
        return progress_line(label, *progress);
      },
      interval);
}

std::optional<Progress> SaveProgressEvents::operator()() {
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // nothing more for now, or the stream ended
    pending_.append(buffer, static_cast<size_t>(n));
  }
  std::optional<Progress> latest;
  size_t newline;
  while ((newline = pending_.find('\n')) != std::string::npos) {
    const auto event = nlohmann::json::parse(pending_.substr(0, newline), nullptr, /*allow_exceptions=*/false);
    pending_.erase(0, newline + 1);
    if (!event.is_object() || event.value("event", "") != "save-progress") continue;
    const auto done = event.find("done_bytes"), total = event.find("total_bytes");
    if (done == event.end() || total == event.end() || !done->is_number_unsigned() || !total->is_number_unsigned())
      continue;
    latest = Progress{done->get<uint64_t>(), total->get<uint64_t>()};
  }
  return latest;
}

}  // namespace kdom::cli
