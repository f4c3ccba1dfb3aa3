// Diagnostics from kdom itself: one line each on stderr, prefixed "kdom: ".
#pragma once

#include <string_view>

namespace kdom {

void log_line(std::string_view line);

// Seconds since this process started (for boot timing figures).
double seconds_since_process_start();

}  // namespace kdom
