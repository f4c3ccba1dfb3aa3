// The xl.cfg(5) parser. Text is read in two steps: the syntax (a Lexer-free recursive descent
// over characters) gives an ordered list of settings, each with the place it came from; then
// the settings, after the command line's overrides replaced some, are turned one by one into a
// DomainConfig, checking each value where it was written so that errors name its line.
#include "config/xl_cfg.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>
#include <optional>

#include "base/file.h"

namespace kdom::config {

namespace {

constexpr const char* kCommandLine = "command line";

// A string item of a list, with the place it was written.
struct ListItem {
  std::string text;
  std::string where;
};

struct Value {
  enum class Kind { kString, kNumber, kList };
  Kind kind = Kind::kString;
  std::string text;
  uint64_t number = 0;
  std::vector<ListItem> items;
};

// One `KEY = VALUE`. `where` is "FILE:LINE" (or "command line"); `base_dir` is what relative
// paths in it are relative to (empty: keep them as written).
struct Setting {
  std::string key;
  Value value;
  std::string where;
  std::string base_dir;
};

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  const auto last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

bool is_key_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_key_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// What a character looks like in a message.
std::string shown(char c) {
  if (c == '\n') return "end of line";
  if (std::isprint(static_cast<unsigned char>(c))) return std::string("'") + c + "'";
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02x", static_cast<unsigned char>(c));
  return std::string("byte ") + hex;
}

// The syntax: text in, settings out, in the order written. Keys given twice are refused here.
class SyntaxReader {
 public:
  // With `with_lines`, places are "SOURCE:LINE"; without (an override), just "SOURCE".
  SyntaxReader(const std::string& text, std::string source, bool with_lines, std::string base_dir)
      : text_(text), source_(std::move(source)), with_lines_(with_lines), base_dir_(std::move(base_dir)) {}

  std::vector<Setting> read() {
    std::vector<Setting> settings;
    while (true) {
      skip_blanks(/*newlines=*/true, /*separators=*/true);
      if (at_end()) break;
      Setting setting = read_setting();
      for (const auto& earlier : settings)
        if (earlier.key == setting.key)
          throw XlCfgError(setting.where + ": '" + setting.key + "' is given twice (first at " + earlier.where + ")");
      settings.push_back(std::move(setting));
    }
    return settings;
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  std::string where() const { return with_lines_ ? source_ + ":" + std::to_string(line_) : source_; }
  [[noreturn]] void fail(const std::string& what) const { throw XlCfgError(where() + ": " + what); }

  void advance() {
    if (text_[pos_] == '\n') ++line_;
    ++pos_;
  }

  // Spaces and comments; newlines and ';' too when asked.
  void skip_blanks(bool newlines, bool separators) {
    while (!at_end()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n') || (separators && c == ';')) {
        advance();
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') advance();
      } else {
        break;
      }
    }
  }

  Setting read_setting() {
    if (!is_key_start(peek())) fail("expected a setting 'KEY = VALUE', found " + shown(peek()));
    Setting setting;
    setting.where = where();
    setting.base_dir = base_dir_;
    while (!at_end() && is_key_char(peek())) setting.key += text_[pos_++];
    skip_blanks(/*newlines=*/false, /*separators=*/false);
    if (peek() != '=') fail("expected '=' after '" + setting.key + "'" + found_suffix());
    advance();
    skip_blanks(/*newlines=*/false, /*separators=*/false);
    setting.value = read_value(setting.key);
    skip_blanks(/*newlines=*/false, /*separators=*/false);
    if (!at_end() && peek() != '\n' && peek() != ';')
      fail("unexpected " + shown(peek()) + " after the value of '" + setting.key + "'");
    return setting;
  }

  std::string found_suffix() const { return at_end() ? " at the end of the input" : ", found " + shown(peek()); }

  Value read_value(const std::string& key) {
    const char c = peek();
    if (c == '"' || c == '\'') return {Value::Kind::kString, read_string(), 0, {}};
    if (std::isdigit(static_cast<unsigned char>(c))) return {Value::Kind::kNumber, "", read_number(), {}};
    if (c == '[') return read_list(key);
    if (at_end() || c == '\n' || c == ';') fail("'" + key + "' has no value");
    if (is_key_start(c)) {
      std::string word;
      for (size_t i = pos_; i < text_.size() && is_key_char(text_[i]); ++i) word += text_[i];
      fail("the value of '" + key + "' must be a number, a list or a string in quotes, found '" + word + "'");
    }
    fail("the value of '" + key + "' must be a number, a list or a string in quotes, found " + shown(c));
  }

  std::string read_string() {
    const char quote = peek();
    advance();
    std::string text;
    while (true) {
      if (at_end() || peek() == '\n') fail("unterminated string (a string ends on the line it starts)");
      const char c = text_[pos_++];
      if (c == quote) return text;
      // Only double-quoted strings have escapes, as in xl's lexer.
      if (c == '\\' && quote == '"') {
        text += read_escape();
      } else {
        text += c;
      }
    }
  }

  char read_escape() {
    if (at_end() || peek() == '\n') fail("unterminated string (a string ends on the line it starts)");
    const char c = text_[pos_++];
    switch (c) {
      case '\\': return '\\';
      case '"': return '"';
      case '\'': return '\'';
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case 'x': {
        std::string digits;
        while (digits.size() < 2 && std::isxdigit(static_cast<unsigned char>(peek()))) digits += text_[pos_++];
        if (digits.empty()) fail("'\\x' in a string needs hex digits");
        return static_cast<char>(std::stoul(digits, nullptr, 16));
      }
      default:
        if (c >= '0' && c <= '7') {
          unsigned value = static_cast<unsigned>(c - '0');
          for (int i = 0; i < 2 && peek() >= '0' && peek() <= '7'; ++i) value = value * 8 + (text_[pos_++] - '0');
          if (value > 0xff) fail("octal escape in a string is larger than a byte");
          return static_cast<char>(value);
        }
        fail(std::string("unknown escape '\\") + c + "' in a string");
    }
  }

  uint64_t read_number() {
    const size_t start = pos_;
    while (!at_end() && (is_key_char(peek()) || peek() == '.')) ++pos_;
    const std::string word = text_.substr(start, pos_ - start);
    const bool hex = word.size() > 2 && word[0] == '0' && (word[1] == 'x' || word[1] == 'X');
    const std::string digits = hex ? word.substr(2) : word;
    const bool good = std::all_of(digits.begin(), digits.end(), [hex](char c) {
      return hex ? std::isxdigit(static_cast<unsigned char>(c)) != 0 : std::isdigit(static_cast<unsigned char>(c)) != 0;
    });
    if (!good) fail("'" + word + "' is not a number (decimal, or hex with 0x)");
    uint64_t value = 0;
    const uint64_t base = hex ? 16 : 10;
    for (char c : digits) {
      const uint64_t digit = static_cast<uint64_t>(std::stoul(std::string(1, c), nullptr, 16));
      if (value > (std::numeric_limits<uint64_t>::max() - digit) / base) fail("number '" + word + "' is too large");
      value = value * base + digit;
    }
    return value;
  }

  Value read_list(const std::string& key) {
    const int opened_on = line_;
    advance();  // '['
    Value list{Value::Kind::kList, "", 0, {}};
    auto unclosed = [&](const std::string& found) {
      // At the end of the input the useful line is the one that opened the list.
      if (at_end()) line_ = opened_on;
      fail("the list of '" + key + "' opened on line " + std::to_string(opened_on) + " is not closed: expected " +
           (list.items.empty() ? "a string or ']'" : "',' or ']'") + ", found " + found);
    };
    while (true) {
      skip_blanks(/*newlines=*/true, /*separators=*/false);
      if (at_end()) unclosed("the end of the input");
      if (peek() == ']') break;
      if (peek() == '"' || peek() == '\'') {
        const std::string item_where = where();
        list.items.push_back({read_string(), item_where});
      } else if (std::isdigit(static_cast<unsigned char>(peek()))) {
        fail("the items of the list of '" + key + "' must be strings in quotes");
      } else {
        unclosed(shown(peek()));
      }
      skip_blanks(/*newlines=*/true, /*separators=*/false);
      if (at_end()) unclosed("the end of the input");
      if (peek() == ']') break;
      if (peek() != ',') unclosed(shown(peek()));
      advance();
    }
    advance();  // ']'
    return list;
  }

  const std::string& text_;
  std::string source_;
  bool with_lines_;
  std::string base_dir_;
  size_t pos_ = 0;
  int line_ = 1;
};

// ---- values -------------------------------------------------------------------------------

[[noreturn]] void fail_at(const std::string& where, const std::string& what) { throw XlCfgError(where + ": " + what); }

const std::string& string_of(const Setting& setting) {
  if (setting.value.kind != Value::Kind::kString)
    fail_at(setting.where, "'" + setting.key + "' must be a string in quotes");
  return setting.value.text;
}

uint64_t number_of(const Setting& setting, uint64_t max = std::numeric_limits<uint64_t>::max()) {
  if (setting.value.kind != Value::Kind::kNumber) fail_at(setting.where, "'" + setting.key + "' must be a number");
  if (setting.value.number > max)
    fail_at(setting.where, "'" + setting.key + "' is too large (" + std::to_string(setting.value.number) + ")");
  return setting.value.number;
}

bool boolean_of(const Setting& setting) {
  if (setting.value.kind != Value::Kind::kNumber || setting.value.number > 1)
    fail_at(setting.where, "'" + setting.key + "' must be 0 or 1");
  return setting.value.number == 1;
}

const std::vector<ListItem>& list_of(const Setting& setting) {
  if (setting.value.kind != Value::Kind::kList)
    fail_at(setting.where, "'" + setting.key + "' must be a list: [ '...', ... ]");
  return setting.value.items;
}

std::string resolve_path(const std::string& path, const std::string& base_dir) {
  if (path.empty() || base_dir.empty() || path.front() == '/') return path;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    parts.push_back(trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

// "disk" or "disk:cdrom"-style vdev suffixes and devtype= values.
void check_devtype(const std::string& devtype, const std::string& where) {
  if (devtype == "disk") return;
  if (devtype == "cdrom") fail_at(where, "disk devtype 'cdrom' is not supported by kdom (disks only)");
  fail_at(where, "unknown disk devtype '" + devtype + "' (kdom supports 'disk')");
}

// xl-disk-configuration(5): positional `target,format,vdev,access` and/or key=value items;
// `target=` takes the rest of the text, commas included.
DiskSpec parse_disk(const std::string& text, const std::string& where, const std::string& base_dir) {
  const std::string context = "disk '" + text + "': ";
  static const char* const kPositions[] = {"target", "format", "vdev", "access"};
  std::optional<std::string> values[4];  // by position in kPositions
  bool shared = false;
  size_t next_position = 0;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (item.rfind("target=", 0) == 0) {
      if (values[0]) fail_at(where, context + "the target is given twice");
      values[0] = trim(trim(text.substr(start)).substr(std::string("target=").size()));
      break;
    }
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    const size_t equals = item.find('=');
    if (equals == std::string::npos) {
      if (item == "cdrom") fail_at(where, context + "cdrom devices are not supported by kdom (disks only)");
      if (item == "shared") {  // kdom's flag: the image's lock lets other writers in
        if (shared) fail_at(where, context + "'shared' is given twice");
        shared = true;
        continue;
      }
      if (next_position >= 4) fail_at(where, context + "too many positional parameters (target,format,vdev,access)");
      if (!item.empty()) values[next_position] = item;
      ++next_position;
      continue;
    }
    const std::string key = trim(item.substr(0, equals));
    const std::string value = trim(item.substr(equals + 1));
    if (key == "backendtype" || key == "backend" || key == "script")
      fail_at(where, context + "'" + key + "=' is not supported by kdom");
    if (key == "devtype") {
      check_devtype(value, where);
      continue;
    }
    auto known = std::find_if(std::begin(kPositions), std::end(kPositions),
                              [&](const char* name) { return key == name; });
    if (known == std::end(kPositions)) fail_at(where, context + "unknown disk parameter '" + key + "'");
    auto& slot = values[known - std::begin(kPositions)];
    if (slot) fail_at(where, context + "'" + key + "' is given twice");
    slot = value;
  }

  DiskSpec disk;
  disk.shared = shared;
  disk.target = resolve_path(values[0].value_or(""), base_dir);
  if (disk.target.empty()) fail_at(where, context + "no target (the image's path)");
  const std::string format = values[1].value_or("raw");
  if (format != "raw" && !format.empty())
    fail_at(where, context + "format '" + format + "' is not supported (kdom uses raw images only)");
  disk.vdev = values[2].value_or("");
  if (const size_t colon = disk.vdev.find(':'); colon != std::string::npos) {
    check_devtype(disk.vdev.substr(colon + 1), where);
    disk.vdev.erase(colon);
  }
  const std::string access = values[3].value_or("rw");
  if (access == "ro" || access == "r") {
    disk.read_only = true;
  } else if (access != "rw" && access != "w" && !access.empty()) {
    fail_at(where, context + "unknown access '" + access + "' (ro, r, rw or w)");
  }
  return disk;
}

// "10Mb/s", "1MB/s", "100KB/s", optionally "@50ms": decimal prefixes, b = bits, B = bytes.
uint64_t parse_rate(const std::string& text, const std::string& where) {
  const std::string bad = "vif rate '" + text + "' is not like '10Mb/s', '1MB/s' or '100KB/s@50ms'";
  const size_t at = text.find('@');
  const std::string rate = text.substr(0, at);
  if (at != std::string::npos) {
    // The replenish interval: accepted for xl's sake, kdom's limiter picks its own.
    const std::string interval = text.substr(at + 1);
    size_t digits = 0;
    while (digits < interval.size() && std::isdigit(static_cast<unsigned char>(interval[digits]))) ++digits;
    const std::string unit = interval.substr(digits);
    if (digits == 0 || (unit != "" && unit != "s" && unit != "ms" && unit != "us")) fail_at(where, bad);
  }
  size_t digits = 0;
  while (digits < rate.size() && std::isdigit(static_cast<unsigned char>(rate[digits]))) ++digits;
  if (digits == 0 || digits > 15) fail_at(where, bad);
  uint64_t value = std::stoull(rate.substr(0, digits));
  std::string unit = rate.substr(digits);
  uint64_t multiplier = 1;
  if (!unit.empty() && (unit[0] == 'K' || unit[0] == 'k' || unit[0] == 'M' || unit[0] == 'G')) {
    multiplier = unit[0] == 'G' ? 1000000000 : unit[0] == 'M' ? 1000000 : 1000;
    unit.erase(0, 1);
  }
  if (unit != "B/s" && unit != "b/s") fail_at(where, bad);
  if (value > std::numeric_limits<uint64_t>::max() / multiplier) fail_at(where, bad);
  value *= multiplier;
  if (unit == "b/s") value /= 8;
  if (value == 0) fail_at(where, "vif rate '" + text + "' is zero (leave rate out for no limit)");
  return value;
}

// xl-network-configuration(5): comma-separated key=value items.
VifSpec parse_vif(const std::string& text, const std::string& where) {
  const std::string context = "vif '" + text + "': ";
  VifSpec vif;
  std::vector<std::string> seen;
  for (const std::string& item : split_commas(text)) {
    if (item.empty()) continue;
    const size_t equals = item.find('=');
    if (equals == std::string::npos) fail_at(where, context + "'" + item + "' is not KEY=VALUE");
    const std::string key = trim(item.substr(0, equals));
    const std::string value = trim(item.substr(equals + 1));
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) fail_at(where, context + "'" + key + "' is given twice");
    seen.push_back(key);
    if (key == "mac") {
      try {
        validate_mac(value);
      } catch (const Error& error) {
        fail_at(where, context + error.what());
      }
      vif.mac = value;
    } else if (key == "bridge") {
      vif.bridge = value;
    } else if (key == "ip") {
      vif.ip = value;
    } else if (key == "rate") {
      vif.rate_bytes_per_second = parse_rate(value, where);
    } else if (key == "vifname") {
      vif.tap = value;
    } else if (key == "model") {
      if (value != "virtio-net") fail_at(where, context + "model '" + value + "' is not supported (kdom has virtio-net)");
    } else if (key == "type") {
      if (value != "vif" && value != "ioemu") fail_at(where, context + "unknown type '" + value + "' (vif or ioemu)");
    } else if (key == "script" || key == "backend") {
      fail_at(where, context + "'" + key + "=' is not supported by kdom");
    } else {
      fail_at(where, context + "unknown vif parameter '" + key + "'");
    }
  }
  return vif;
}

LifecycleAction action_of(const Setting& setting) {
  const std::string& text = string_of(setting);
  if (text == "coredump-destroy" || text == "coredump-restart" || text == "soft-reset")
    fail_at(setting.where, setting.key + " '" + text + "' is not supported by kdom");
  try {
    return parse_lifecycle_action(text);
  } catch (const Error& error) {
    fail_at(setting.where, setting.key + ": " + error.what());
  }
}

// Turns settings into a DomainConfig, one at a time; some (cmdline, balloon) are settled at the
// end because they depend on others.
class ConfigBuilder {
 public:
  explicit ConfigBuilder(DomainConfig config, bool root_and_extra_allowed = true)
      : config_(std::move(config)), root_and_extra_allowed_(root_and_extra_allowed) {}

  void apply(const Setting& setting) {
    const std::string& key = setting.key;
    if (key == "name") {
      config_.name = string_of(setting);
    } else if (key == "uuid") {
      config_.uuid = string_of(setting);
    } else if (key == "type") {
      const std::string& type = string_of(setting);
      if (type == "pv") fail_at(setting.where, "type 'pv': kdom has no PV mode (use 'pvh')");
      if (type != "pvh" && type != "hvm") fail_at(setting.where, "unknown type '" + type + "' (pvh or hvm)");
    } else if (key == "memory") {
      config_.memory_mib = number_of(setting);
    } else if (key == "maxmem") {
      config_.maxmem_mib = number_of(setting);
    } else if (key == "vcpus") {
      config_.vcpus = static_cast<uint32_t>(number_of(setting, UINT32_MAX));
    } else if (key == "maxvcpus") {
      config_.maxvcpus = static_cast<uint32_t>(number_of(setting, UINT32_MAX));
    } else if (key == "kernel") {
      config_.kernel = resolve_path(string_of(setting), setting.base_dir);
    } else if (key == "ramdisk") {
      config_.ramdisk = resolve_path(string_of(setting), setting.base_dir);
    } else if (key == "cmdline") {
      config_.cmdline = string_of(setting);
      cmdline_ = &setting;
    } else if (key == "root" || key == "extra") {
      string_of(setting);
      if (!root_and_extra_allowed_)
        fail_at(setting.where, "'" + key + "' cannot be overridden on its own here: give cmdline=\"...\" (the whole command line)");
      (key == "root" ? root_ : extra_) = &setting;
    } else if (key == "on_poweroff") {
      config_.on_poweroff = action_of(setting);
    } else if (key == "on_reboot") {
      config_.on_reboot = action_of(setting);
    } else if (key == "on_crash") {
      config_.on_crash = action_of(setting);
    } else if (key == "disk") {
      config_.disks.clear();
      for (const auto& item : list_of(setting)) config_.disks.push_back(parse_disk(item.text, item.where, setting.base_dir));
    } else if (key == "vif") {
      config_.vifs.clear();
      for (const auto& item : list_of(setting)) {
        config_.vifs.push_back(parse_vif(item.text, item.where));
        config_.vifs.back().devid = static_cast<uint32_t>(config_.vifs.size() - 1);
      }
    } else if (key == "serial") {
      apply_serial(setting);
    } else if (key == "vsock") {
      config_.vsock_cid = number_of(setting);
    } else if (key == "rng") {
      config_.rng = boolean_of(setting);
    } else if (key == "balloon") {
      boolean_of(setting);
      balloon_ = &setting;
    } else if (key == "balloon_stats") {
      number_of(setting, UINT32_MAX);
      balloon_stats_ = &setting;
    } else {
      fail_at(setting.where, "unknown key '" + key + "'");
    }
  }

  DomainConfig finish() {
    if (cmdline_ && (root_ || extra_)) {
      const Setting& part = root_ ? *root_ : *extra_;
      fail_at(part.where, "'" + part.key + "' cannot be combined with 'cmdline' (" + cmdline_->where +
                              "), which is the whole command line");
    }
    if (root_ || extra_) {
      std::string cmdline;
      if (root_ && !trim(root_->value.text).empty()) cmdline = "root=" + trim(root_->value.text);
      if (extra_ && !trim(extra_->value.text).empty())
        cmdline += (cmdline.empty() ? "" : " ") + trim(extra_->value.text);
      config_.cmdline = cmdline;
    }
    const bool balloon = balloon_ ? balloon_->value.number == 1 : config_.balloon_stats_seconds.has_value();
    if (balloon_stats_ && !balloon) fail_at(balloon_stats_->where, "'balloon_stats' needs 'balloon = 1'");
    if (!balloon) {
      config_.balloon_stats_seconds.reset();
    } else if (balloon_stats_) {
      config_.balloon_stats_seconds = balloon_stats_->value.number;
    } else {
      config_.balloon_stats_seconds = config_.balloon_stats_seconds.value_or(0);
    }
    return std::move(config_);
  }

 private:
  void apply_serial(const Setting& setting) {
    // kdom's console is always the daemon's; only xl's usual "pty" makes sense.
    std::vector<std::string> values;
    if (setting.value.kind == Value::Kind::kList) {
      for (const auto& item : setting.value.items) values.push_back(item.text);
    } else {
      values.push_back(string_of(setting));
    }
    if (values.size() > 1) fail_at(setting.where, "'serial' lists more than one port (kdom has one console)");
    for (const auto& value : values)
      if (value != "pty") fail_at(setting.where, "serial '" + value + "' is not supported (kdom's console is a pty)");
  }

  DomainConfig config_;
  bool root_and_extra_allowed_;
  // Settings that finish() settles; they point into the caller's settings, which outlive this.
  const Setting* cmdline_ = nullptr;
  const Setting* root_ = nullptr;
  const Setting* extra_ = nullptr;
  const Setting* balloon_ = nullptr;
  const Setting* balloon_stats_ = nullptr;
};

std::vector<Setting> read_overrides(const std::vector<std::string>& overrides, const std::string& base_dir) {
  std::vector<Setting> settings;
  for (const auto& text : overrides) {
    for (auto& setting : SyntaxReader(text, kCommandLine, /*with_lines=*/false, base_dir).read()) {
      for (const auto& earlier : settings)
        if (earlier.key == setting.key) fail_at(kCommandLine, "'" + setting.key + "' is given twice");
      settings.push_back(std::move(setting));
    }
  }
  return settings;
}

// The overrides replace the file's settings of the same key. The command line is one thing
// written two ways, so replacing cmdline drops the file's root and extra, and the other way round.
void merge_overrides(std::vector<Setting>& settings, std::vector<Setting> overrides) {
  for (auto& override_setting : overrides) {
    const std::string& key = override_setting.key;
    std::erase_if(settings, [&](const Setting& setting) {
      if (setting.key == key) return true;
      if (key == "cmdline") return setting.key == "root" || setting.key == "extra";
      if (key == "root" || key == "extra") return setting.key == "cmdline";
      return false;
    });
    settings.push_back(std::move(override_setting));
  }
}

DomainConfig build(const std::vector<Setting>& settings, const std::string& file_name) {
  ConfigBuilder builder{DomainConfig{}};
  for (const auto& setting : settings) builder.apply(setting);
  DomainConfig config = builder.finish();
  for (const char* required : {"name", "kernel"}) {
    const bool given = std::any_of(settings.begin(), settings.end(),
                                   [&](const Setting& setting) { return setting.key == required; });
    if (!given) throw XlCfgError(file_name + ": no '" + required + "' given");
  }
  try {
    validate(config);
  } catch (const Error& error) {
    throw XlCfgError(file_name + ": " + error.what());
  }
  return config;
}

std::string read_text(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, "xl.cfg");
  return std::string(bytes.begin(), bytes.end());
}

std::string directory_of(const std::string& path) {
  return std::filesystem::absolute(path).parent_path().lexically_normal().string();
}

}  // namespace

DiskSpec parse_disk_spec(const std::string& text, const std::string& base_dir) {
  return parse_disk(text, "command line", base_dir);
}

VifSpec parse_vif_spec(const std::string& text) { return parse_vif(text, "command line"); }

DomainConfig parse_xl_cfg(const std::string& text, const std::string& file_name) {
  return parse_xl_cfg(text, file_name, {});
}

DomainConfig parse_xl_cfg(const std::string& text, const std::string& file_name,
                          const std::vector<std::string>& overrides) {
  std::vector<Setting> settings = SyntaxReader(text, file_name, /*with_lines=*/true, "").read();
  merge_overrides(settings, read_overrides(overrides, ""));
  return build(settings, file_name);
}

DomainConfig parse_xl_cfg_file(const std::string& path) { return parse_xl_cfg_file(path, {}); }

DomainConfig parse_xl_cfg_file(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string text = read_text(path);
  std::vector<Setting> settings = SyntaxReader(text, path, /*with_lines=*/true, directory_of(path)).read();
  merge_overrides(settings, read_overrides(overrides, std::filesystem::current_path().string()));
  return build(settings, path);
}

void apply_xl_overrides(DomainConfig& config, const std::vector<std::string>& overrides) {
  const std::vector<Setting> settings = read_overrides(overrides, "");
  ConfigBuilder builder(config, /*root_and_extra_allowed=*/false);
  for (const auto& setting : settings) builder.apply(setting);
  DomainConfig updated = builder.finish();
  try {
    validate(updated);
  } catch (const Error& error) {
    throw XlCfgError(std::string(kCommandLine) + ": " + error.what());
  }
  config = std::move(updated);
}

void check_xl_overrides(const std::vector<std::string>& overrides) {
  const std::vector<Setting> settings = read_overrides(overrides, "");
  ConfigBuilder builder(DomainConfig{}, /*root_and_extra_allowed=*/false);
  for (const auto& setting : settings) builder.apply(setting);
}

}  // namespace kdom::config
