// Writes kdom's own diagnostics to stderr with a single write() per line so lines from
// different threads never interleave.
#include "base/log.h"

#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace kdom {

void log_line(std::string_view line) {
  std::string out = "kdom: ";
  out.append(line);
  out.push_back('\n');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(STDERR_FILENO, out.data() + done, out.size() - done);
    // A vCPU thread's writes may be interrupted by its kick signal (a pause, the throttle).
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

void CappedLog::line(std::string_view text) {
  const uint64_t seen = count_.fetch_add(1);
  if (seen < limit_) log_line(text);
  if (seen + 1 == limit_)
    log_line(kind_ + ": " + std::to_string(limit_) + " such lines logged; later ones are only counted");
}

namespace {

double monotonic_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Taken during static initialisation, before main(); the binary is static, so little runs
// before it.
const double kProcessStart = monotonic_now();

}  // namespace

double seconds_since_process_start() { return monotonic_now() - kProcessStart; }

}  // namespace kdom
