// Server-sent events: the writer and a parser that follows the standard's line rules (LF, CR
// or CRLF; "field: value" with one optional space; comments start with ':').
#include "base/sse.h"

#include <algorithm>

#include "base/error.h"

namespace kdom {

namespace {

std::string one_line(std::string_view text) {
  std::string out(text);
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return out;
}

}  // namespace

std::string sse_message(std::string_view event, std::string_view data, std::optional<uint64_t> id) {
  std::string out;
  if (id) out += "id: " + std::to_string(*id) + "\n";
  if (!event.empty()) out += "event: " + one_line(event) + "\n";
  size_t start = 0;
  for (;;) {
    const size_t end = data.find_first_of("\r\n", start);
    out += "data: ";
    out += data.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    out += "\n";
    if (end == std::string_view::npos) break;
    start = end + (data.compare(end, 2, "\r\n") == 0 ? 2 : 1);
  }
  out += "\n";
  return out;
}

std::string sse_comment(std::string_view text) { return ": " + one_line(text) + "\n"; }

void SseParser::feed(std::string_view bytes, const std::function<void(const SseMessage&)>& on_message) {
  for (char c : bytes) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      skip_lf_ = c == '\r';
      const std::string text = std::move(partial_);
      partial_.clear();
      line(text, on_message);
      continue;
    }
    if (partial_.size() >= kMaxLineBytes)
      throw Error("an event stream line is longer than " + std::to_string(kMaxLineBytes) + " bytes");
    partial_.push_back(c);
  }
}

void SseParser::line(std::string_view text, const std::function<void(const SseMessage&)>& on_message) {
  if (text.empty()) {  // the blank line that ends a message
    if (has_data_) {
      if (current_.event.empty()) current_.event = "message";
      on_message(current_);
    }
    const std::string id = current_.id;  // the last id stays until another comes
    current_ = SseMessage{};
    current_.id = id;
    has_data_ = false;
    return;
  }
  if (text.front() == ':') return;
  const size_t colon = text.find(':');
  const std::string_view field = text.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    current_.event = value;
  } else if (field == "id") {
    current_.id = value;
  }  // "retry" and unknown fields: nothing to do for a reader that does not reconnect
}

}  // namespace kdom
