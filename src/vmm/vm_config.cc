// VmConfig parsing and validation.
#include "vmm/vm_config.h"

#include <optional>
#include <set>
#include <vector>

#include "base/error.h"

namespace kdom::vmm {

namespace {
// Guest RAM beyond this would need more than 46 bits of guest-physical address space.
constexpr uint64_t kMaxMemoryMib = uint64_t{64} * 1024 * 1024;
constexpr uint32_t kMaxVcpus = 255;  // xAPIC ids in the MADT are 8 bits
}  // namespace

namespace {

constexpr char kDiskSyntax[] = "PATH[,ro][,shared][,serial=ID][,id=ID][,queues=N][,bw=BYTES][,iops=N][,poll=US]";
constexpr char kBalloonSyntax[] = "[target=MIB][,stats=SECONDS][,deflate-on-oom][,free-page-reporting][,id=ID]";
constexpr uint16_t kMaxDiskQueues = 64;
constexpr uint64_t kMaxDiskPollMicros = 1000;

// The comma-separated parts of a device option ("a,b=c" -> "a", "b=c"); at least one.
std::vector<std::string> split_settings(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

// The value of `part` if it is "key=VALUE", else nullopt.
std::optional<std::string> value_of(const std::string& part, const std::string& key) {
  if (part.size() <= key.size() || part.compare(0, key.size(), key) != 0 || part[key.size()] != '=')
    return std::nullopt;
  return part.substr(key.size() + 1);
}

// A string of 1 to `max_digits` (at most 19) decimal digits as a number; nullopt otherwise.
std::optional<uint64_t> whole_number(const std::string& text, size_t max_digits = 19) {
  if (text.empty() || text.size() > max_digits || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::stoull(text);
}

// A whole number with an optional K, M or G suffix (powers of 1024); throws naming `what`.
uint64_t parse_amount(const std::string& text, const std::string& what, bool suffixes) {
  uint64_t multiplier = 1;
  std::string digits = text;
  if (suffixes && !digits.empty()) {
    switch (digits.back()) {
      case 'K': case 'k': multiplier = uint64_t{1} << 10; break;
      case 'M': case 'm': multiplier = uint64_t{1} << 20; break;
      case 'G': case 'g': multiplier = uint64_t{1} << 30; break;
      default: break;
    }
    if (multiplier != 1) digits.pop_back();
  }
  const std::optional<uint64_t> number = whole_number(digits, 15);
  if (!number || *number > UINT64_MAX / multiplier)
    throw Error(what + " must be a whole number" + (suffixes ? " (optionally with K, M or G)" : "") + ", not '" +
                text + "'");
  return *number * multiplier;
}

// `value` as a whole number from 0 to `max`; otherwise an Error "<must_be> from 0 to MAX, not
// 'VALUE'".
uint64_t number_up_to(const std::string& value, uint64_t max, const std::string& must_be) {
  const std::optional<uint64_t> number = whole_number(value);
  if (!number || *number > max)
    throw Error(must_be + " from 0 to " + std::to_string(max) + ", not '" + value + "'");
  return *number;
}

// A per-second limit (bw=, iops=, pps=): above 0, since leaving it out means no limit.
uint64_t parse_rate(const std::string& value, const std::string& where, const std::string& name,
                    const std::string& unit) {
  const uint64_t rate = parse_amount(value, where + ": " + name + unit, true);
  if (rate == 0) throw Error(where + ": " + name + " must be above 0 (leave it out for no limit)");
  return rate;
}

// "stdio", "pty", "none", "file:PATH" (or "socket:PATH" where allowed); nullopt for anything else.
std::optional<ConsoleConfig> console_backend(const std::string& text, bool allow_socket) {
  if (text == "stdio") return ConsoleConfig{ConsoleKind::kStdio, ""};
  if (text == "pty") return ConsoleConfig{ConsoleKind::kPty, ""};
  if (text == "none") return ConsoleConfig{ConsoleKind::kNone, ""};
  if (text.rfind("file:", 0) == 0 && text.size() > 5) return ConsoleConfig{ConsoleKind::kFile, text.substr(5)};
  if (allow_socket && text.rfind("socket:", 0) == 0 && text.size() > 7)
    return ConsoleConfig{ConsoleKind::kSocket, text.substr(7)};
  return std::nullopt;
}

}  // namespace

DiskConfig parse_disk(const std::string& text) {
  DiskConfig disk;
  const std::string where = "--disk '" + text + "'";
  const std::vector<std::string> parts = split_settings(text);
  disk.path = parts.front();
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (part == "ro") {
      disk.read_only = true;
    } else if (part == "shared") {
      disk.shared = true;
    } else if (auto serial = value_of(part, "serial")) {
      disk.serial = *serial;
    } else if (auto id = value_of(part, "id"); id && !id->empty()) {
      disk.id = *id;
    } else if (auto queues_text = value_of(part, "queues")) {
      const uint64_t queues = parse_amount(*queues_text, where + ": queues", false);
      if (queues == 0 || queues > kMaxDiskQueues)
        throw Error(where + ": queues must be between 1 and " + std::to_string(kMaxDiskQueues));
      disk.queues = static_cast<uint16_t>(queues);
    } else if (auto bw = value_of(part, "bw")) {
      disk.rate_limit.bytes_per_second = parse_rate(*bw, where, "bw", " (bytes per second)");
    } else if (auto iops = value_of(part, "iops")) {
      disk.rate_limit.ops_per_second = parse_rate(*iops, where, "iops", "");
    } else if (auto poll = value_of(part, "poll")) {
      const uint64_t micros = number_up_to(*poll, kMaxDiskPollMicros, where + ": poll must be a number of microseconds");
      disk.poll_us = static_cast<uint32_t>(micros);
    } else {
      throw Error(where + ": unknown setting '" + part + "' (" + kDiskSyntax + ")");
    }
  }
  if (disk.path.empty()) throw Error(std::string("--disk needs a path (") + kDiskSyntax + ")");
  if (disk.serial.size() > 20) throw Error(where + ": serial is longer than 20 bytes");
  return disk;
}

BalloonConfig parse_balloon(const std::string& text) {
  BalloonConfig balloon;
  if (text.empty()) return balloon;
  const std::string where = "--balloon '" + text + "'";
  auto number = [&](const std::string& name, const std::string& value, uint64_t max) {
    return number_up_to(value, max, where + ": " + name + " must be a number");
  };
  for (const std::string& part : split_settings(text)) {
    if (auto target = value_of(part, "target")) {
      balloon.target_mib = number("target", *target, kMaxMemoryMib);
    } else if (auto stats = value_of(part, "stats")) {
      balloon.stats_seconds = static_cast<uint32_t>(number("stats", *stats, 86400));
    } else if (part == "deflate-on-oom") {
      balloon.deflate_on_oom = true;
    } else if (part == "free-page-reporting") {
      balloon.free_page_reporting = true;
    } else if (auto id = value_of(part, "id"); id && !id->empty()) {
      balloon.id = *id;
    } else if (part.empty()) {
      throw Error(where + ": empty setting (" + kBalloonSyntax + ")");
    } else {
      throw Error(where + ": unknown setting '" + part + "' (" + kBalloonSyntax + ")");
    }
  }
  return balloon;
}

std::array<uint8_t, 6> parse_mac(const std::string& text) {
  std::array<uint8_t, 6> mac{};
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool ok = text.size() == 17;
  for (size_t i = 0; ok && i < 6; ++i) {
    const int high = hex(text[3 * i]), low = hex(text[3 * i + 1]);
    if (high < 0 || low < 0 || (i < 5 && text[3 * i + 2] != ':')) ok = false;
    else mac[i] = static_cast<uint8_t>(high << 4 | low);
  }
  if (!ok) throw Error("MAC address '" + text + "' is malformed (want six hex bytes: 52:54:00:12:34:56)");
  if (mac[0] & 1) throw Error("MAC address '" + text + "' is a multicast address (the first byte must be even)");
  if (mac == std::array<uint8_t, 6>{}) throw Error("MAC address '" + text + "' is all zeroes");
  return mac;
}

NetConfig parse_net(const std::string& text) {
  const std::string usage = " (tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX][,id=ID][,bw=BYTES][,pps=N])";
  const std::string where = "--net '" + text + "'";
  NetConfig net;
  bool fd_given = false;
  for (const std::string& part : split_settings(text)) {
    if (auto tap = value_of(part, "tap")) {
      net.tap = *tap;
      if (net.tap.empty()) throw Error(where + ": tap= needs an interface name" + usage);
    } else if (auto fd = value_of(part, "fd")) {
      const std::optional<uint64_t> number = whole_number(*fd, 9);
      if (!number) throw Error(where + ": fd= needs a file descriptor number, not '" + *fd + "'");
      net.fd = static_cast<int>(*number);
      fd_given = true;
    } else if (auto mac = value_of(part, "mac")) {
      try {
        net.mac = parse_mac(*mac);
      } catch (const Error& error) {
        throw Error(where + ": " + error.what());
      }
    } else if (auto id = value_of(part, "id")) {
      net.id = *id;
      if (net.id.empty()) throw Error(where + ": id= needs a name" + usage);
    } else if (auto bw = value_of(part, "bw")) {
      net.rate_limit.bytes_per_second = parse_rate(*bw, where, "bw", " (bytes per second)");
    } else if (auto pps = value_of(part, "pps")) {
      net.rate_limit.ops_per_second = parse_rate(*pps, where, "pps", " (frames per second)");
    } else {
      throw Error(where + ": unknown setting '" + part + "'" + usage);
    }
  }
  if (net.tap.empty() && !fd_given) throw Error(where + ": needs tap=NAME or fd=N" + usage);
  if (!net.tap.empty() && fd_given) throw Error(where + ": give tap=NAME or fd=N, not both" + usage);
  return net;
}

ConsoleConfig parse_console(const std::string& text) {
  if (auto backend = console_backend(text, true)) return *backend;
  throw Error("--console must be stdio, pty, none, file:PATH or socket:PATH, not '" + text + "'");
}

VirtioConsoleConfig parse_hvc(const std::string& text) {
  VirtioConsoleConfig hvc;
  std::string backend = text;
  size_t id_at = text.rfind(",id=");
  if (id_at != std::string::npos) {
    hvc.id = text.substr(id_at + 4);
    backend = text.substr(0, id_at);
    if (hvc.id.empty()) throw Error("--hvc '" + text + "': empty id=");
  }
  const std::optional<ConsoleConfig> parsed = console_backend(backend, false);
  if (!parsed) throw Error("--hvc must be stdio, pty, none or file:PATH (optionally ,id=NAME), not '" + text + "'");
  hvc.backend = *parsed;
  return hvc;
}

VsockConfig parse_vsock(const std::string& text) {
  const std::string usage = " (cid=N,socket=PATH[,id=ID])";
  const std::string where = "--vsock '" + text + "'";
  VsockConfig vsock;
  bool cid_given = false;
  for (const std::string& part : split_settings(text)) {
    if (auto cid = value_of(part, "cid")) {
      const std::optional<uint64_t> number = whole_number(*cid);
      if (!number) throw Error(where + ": cid must be a number" + usage);
      vsock.guest_cid = *number;
      cid_given = true;
    } else if (auto socket = value_of(part, "socket")) {
      vsock.socket_path = *socket;
    } else if (auto id = value_of(part, "id")) {
      vsock.id = *id;
    } else {
      throw Error(where + ": unknown setting '" + part + "'" + usage);
    }
  }
  if (!cid_given) throw Error(where + ": missing cid=" + usage);
  if (vsock.guest_cid < 3 || vsock.guest_cid > 0xfffffffeULL)
    throw Error(where + ": cid " + std::to_string(vsock.guest_cid) + " is reserved or too large (3..4294967294)");
  if (vsock.socket_path.empty()) throw Error(where + ": missing socket=PATH" + usage);
  return vsock;
}

void validate(const VmConfig& config) {
  if (config.kernel_path.empty()) throw Error("no kernel given");
  if (config.memory_mib == 0) throw Error("--memory must be at least 1 MiB");
  if (config.memory_mib > kMaxMemoryMib) throw Error("--memory " + std::to_string(config.memory_mib) + " MiB is too large");
  if (config.vcpus == 0) throw Error("--vcpus must be at least 1");
  if (config.vcpus > kMaxVcpus)
    throw Error("--vcpus " + std::to_string(config.vcpus) + " is above kdom's limit of " + std::to_string(kMaxVcpus));
  for (size_t i = 0; i < config.disks.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (config.disks[i].path == config.disks[j].path)
        throw Error("disk '" + config.disks[i].path + "' is given twice");
  // num_pages is a 32-bit count of 4 KiB pages.
  if (config.balloon && config.balloon->target_mib >= uint64_t{16} * 1024 * 1024)
    throw Error("--balloon target " + std::to_string(config.balloon->target_mib) + " MiB is beyond the device's 16 TiB limit");
  if (config.balloon && config.balloon->target_mib > config.memory_mib)
    throw Error("--balloon target " + std::to_string(config.balloon->target_mib) + " MiB is larger than guest memory (" +
                std::to_string(config.memory_mib) + " MiB)");
  if (config.hvc && config.hvc->backend.kind == ConsoleKind::kStdio && config.console.kind == ConsoleKind::kStdio)
    throw Error("--hvc stdio and --console stdio both want the terminal; give one of them another back end "
                "(e.g. --console none)");
  if (config.hvc && config.hvc->backend.kind == ConsoleKind::kSocket)
    throw Error("--hvc cannot be on a socket (only --console can)");
  if (config.console.kind == ConsoleKind::kSocket && config.console.path == config.control_path)
    throw Error("--console socket:" + config.console.path + " and --control are the same path");
  for (size_t i = 0; i < config.nets.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const NetConfig &a = config.nets[i], &b = config.nets[j];
      if (!a.tap.empty() && a.tap == b.tap) throw Error("--net: TAP '" + a.tap + "' is given twice");
      if (a.fd >= 0 && a.fd == b.fd) throw Error("--net: fd " + std::to_string(a.fd) + " is given twice");
      if (a.mac && b.mac && *a.mac == *b.mac) throw Error("--net: two interfaces have the same MAC address");
    }
  check_device_ids(config);
}

void check_device_ids(const VmConfig& config) {
  std::set<std::string> seen;
  auto add = [&](const std::string& id, const char* option) {
    if (id.empty()) return;
    if (!seen.insert(id).second) throw Error(std::string(option) + ": device id '" + id + "' is used twice");
  };
  for (const auto& disk : config.disks) add(disk.id, "--disk");
  for (const auto& net : config.nets) add(net.id, "--net");
  if (config.hvc) add(config.hvc->id, "--hvc");
  if (config.vsock) add(config.vsock->id, "--vsock");
  if (config.balloon) add(config.balloon->id, "--balloon");
}

}  // namespace kdom::vmm
