// Server-sent events (the HTML Living Standard's text/event-stream): the daemon writes its
// event streams (GET /v1/events) in this framing and the CLI reads them back.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace kdom {

struct SseMessage {
  std::string event;  // "message" when the stream named none
  std::string data;   // the data lines joined with "\n"
  std::string id;
};

// One message: "id:", "event:" and one "data:" line per line of `data`, then a blank line.
// `event` and `id` must not hold line breaks (they are replaced by spaces).
std::string sse_message(std::string_view event, std::string_view data, std::optional<uint64_t> id = std::nullopt);
// A comment line, which readers ignore: keeps an idle stream's connection known to be alive.
std::string sse_comment(std::string_view text);

// Reads a stream fed in pieces of any size (a message may be split anywhere, even inside a
// CRLF) and hands each complete message on.
class SseParser {
 public:
  // A line longer than this is refused (Error): a stream is never buffered without bound.
  static constexpr size_t kMaxLineBytes = 1024 * 1024;

  void feed(std::string_view bytes, const std::function<void(const SseMessage&)>& on_message);

 private:
  void line(std::string_view text, const std::function<void(const SseMessage&)>& on_message);

  std::string partial_;  // an incomplete line
  bool skip_lf_ = false;  // the last piece ended with CR: a LF starting the next one ends nothing
  SseMessage current_;
  bool has_data_ = false;
};

}  // namespace kdom
