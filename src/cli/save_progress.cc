// The save's progress line, and the thread that runs the save meanwhile.
#include "cli/save_progress.h"

#include <poll.h>
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

std::string save_progress_line(const std::string& label, const SaveProgress& progress) {
  if (progress.total_bytes == 0) return label + ": starting";
  const uint64_t done = std::min(progress.done_bytes, progress.total_bytes);
  char text[96];
  std::snprintf(text, sizeof(text), ": %3u%% (%llu of %llu MiB)", static_cast<unsigned>(done * 100 / progress.total_bytes),
                static_cast<unsigned long long>(done / kMiB), static_cast<unsigned long long>(progress.total_bytes / kMiB));
  return label + text;
}

nlohmann::json run_showing_save_progress(std::ostream& terminal, const std::string& label,
                                         const std::function<nlohmann::json()>& save,
                                         const std::function<std::optional<SaveProgress>()>& poll,
                                         std::chrono::milliseconds interval) {
  auto reply = std::async(std::launch::async, save);
  bool polling = true, drawn = false;
  while (reply.wait_for(interval) != std::future_status::ready) {
    if (!polling) continue;
    try {
      if (const auto progress = poll()) {
        terminal << kClearLine << save_progress_line(label, *progress) << std::flush;
        drawn = true;
      }
    } catch (const std::exception&) {
      polling = false;  // the figures are a nicety; the save's own reply is what counts
    }
  }
  if (drawn) terminal << kClearLine << std::flush;
  return reply.get();
}

std::optional<SaveProgress> SaveProgressEvents::operator()() {
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // nothing more for now, or the stream ended
    pending_.append(buffer, static_cast<size_t>(n));
  }
  std::optional<SaveProgress> latest;
  size_t newline;
  while ((newline = pending_.find('\n')) != std::string::npos) {
    const auto event = nlohmann::json::parse(pending_.substr(0, newline), nullptr, /*allow_exceptions=*/false);
    pending_.erase(0, newline + 1);
    if (!event.is_object() || event.value("event", "") != "save-progress") continue;
    const auto done = event.find("done_bytes"), total = event.find("total_bytes");
    if (done == event.end() || total == event.end() || !done->is_number_unsigned() || !total->is_number_unsigned())
      continue;
    latest = SaveProgress{done->get<uint64_t>(), total->get<uint64_t>()};
  }
  return latest;
}

}  // namespace kdom::cli
