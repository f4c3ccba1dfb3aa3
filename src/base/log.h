// Diagnostics from kdom itself: one line each on stderr, prefixed "kdom: ".
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace kdom {

void log_line(std::string_view line);

// Lines that a guest can cause over and over (a queue it broke, a connection it misused): the
// first `limit` are logged, then one line saying that later ones of this kind are only counted,
// so a hostile guest cannot fill the host's logs. Safe to use from several threads.
class CappedLog {
 public:
  CappedLog(std::string kind, uint32_t limit) : kind_(std::move(kind)), limit_(limit) {}
  void line(std::string_view text);
  // How many lines were asked for, logged or not.
  uint64_t count() const { return count_.load(); }

 private:
  const std::string kind_;
  const uint32_t limit_;
  std::atomic<uint64_t> count_{0};
};

// Seconds since this process started (for boot timing figures).
double seconds_since_process_start();

}  // namespace kdom
