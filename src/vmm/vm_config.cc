// VmConfig parsing and validation.
#include "vmm/vm_config.h"

#include <set>

#include "base/error.h"

namespace kdom::vmm {

namespace {
// Guest RAM beyond this would need more than 46 bits of guest-physical address space.
constexpr uint64_t kMaxMemoryMib = uint64_t{64} * 1024 * 1024;
constexpr uint32_t kMaxVcpus = 255;  // xAPIC ids in the MADT are 8 bits
}  // namespace

namespace {

constexpr char kDiskSyntax[] = "PATH[,ro][,serial=ID][,id=ID][,queues=N][,bw=BYTES][,iops=N]";
constexpr uint16_t kMaxDiskQueues = 64;

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
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 15)
    throw Error(what + " must be a whole number" + (suffixes ? " (optionally with K, M or G)" : "") + ", not '" +
                text + "'");
  return std::stoull(digits) * multiplier;
}

}  // namespace

DiskConfig parse_disk(const std::string& text) {
  DiskConfig disk;
  const std::string where = "--disk '" + text + "'";
  size_t start = 0;
  bool first = true;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t equals = part.find('=');
    const std::string key = part.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : part.substr(equals + 1);
    if (first) {
      disk.path = part;
      first = false;
    } else if (part == "ro") {
      disk.read_only = true;
    } else if (key == "serial" && equals != std::string::npos) {
      disk.serial = value;
    } else if (key == "id" && !value.empty()) {
      disk.id = value;
    } else if (key == "queues" && equals != std::string::npos) {
      const uint64_t queues = parse_amount(value, where + ": queues", false);
      if (queues == 0 || queues > kMaxDiskQueues)
        throw Error(where + ": queues must be between 1 and " + std::to_string(kMaxDiskQueues));
      disk.queues = static_cast<uint16_t>(queues);
    } else if (key == "bw" && equals != std::string::npos) {
      disk.rate_limit.bytes_per_second = parse_amount(value, where + ": bw (bytes per second)", true);
      if (disk.rate_limit.bytes_per_second == 0) throw Error(where + ": bw must be above 0 (leave it out for no limit)");
    } else if (key == "iops" && equals != std::string::npos) {
      disk.rate_limit.ops_per_second = parse_amount(value, where + ": iops", true);
      if (disk.rate_limit.ops_per_second == 0) throw Error(where + ": iops must be above 0 (leave it out for no limit)");
    } else {
      throw Error(where + ": unknown setting '" + part + "' (" + kDiskSyntax + ")");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (disk.path.empty()) throw Error(std::string("--disk needs a path (") + kDiskSyntax + ")");
  if (disk.serial.size() > 20) throw Error(where + ": serial is longer than 20 bytes");
  return disk;
}

namespace {
constexpr const char* kBalloonSyntax = "[target=MIB][,stats=SECONDS][,deflate-on-oom][,free-page-reporting][,id=ID]";

uint64_t parse_balloon_number(const std::string& text, const std::string& name, const std::string& value,
                              uint64_t max) {
  if (value.empty() || value.size() > 19 || value.find_first_not_of("0123456789") != std::string::npos ||
      std::stoull(value) > max)
    throw Error("--balloon '" + text + "': " + name + " must be a number from 0 to " + std::to_string(max) +
                ", not '" + value + "'");
  return std::stoull(value);
}
}  // namespace

BalloonConfig parse_balloon(const std::string& text) {
  BalloonConfig balloon;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (part.rfind("target=", 0) == 0) {
      balloon.target_mib = parse_balloon_number(text, "target", part.substr(7), kMaxMemoryMib);
    } else if (part.rfind("stats=", 0) == 0) {
      balloon.stats_seconds = static_cast<uint32_t>(parse_balloon_number(text, "stats", part.substr(6), 86400));
    } else if (part == "deflate-on-oom") {
      balloon.deflate_on_oom = true;
    } else if (part == "free-page-reporting") {
      balloon.free_page_reporting = true;
    } else if (part.rfind("id=", 0) == 0 && part.size() > 3) {
      balloon.id = part.substr(3);
    } else {
      throw Error("--balloon '" + text + "': unknown setting '" + part + "' (" + kBalloonSyntax + ")");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
    if (start == text.size()) throw Error("--balloon '" + text + "': empty setting (" + kBalloonSyntax + ")");
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
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (part.rfind("tap=", 0) == 0) {
      net.tap = part.substr(4);
      if (net.tap.empty()) throw Error("--net '" + text + "': tap= needs an interface name" + usage);
    } else if (part.rfind("fd=", 0) == 0) {
      const std::string number = part.substr(3);
      if (number.empty() || number.size() > 9 || number.find_first_not_of("0123456789") != std::string::npos)
        throw Error("--net '" + text + "': fd= needs a file descriptor number, not '" + number + "'");
      net.fd = std::stoi(number);
      fd_given = true;
    } else if (part.rfind("mac=", 0) == 0) {
      try {
        net.mac = parse_mac(part.substr(4));
      } catch (const Error& error) {
        throw Error("--net '" + text + "': " + error.what());
      }
    } else if (part.rfind("id=", 0) == 0) {
      net.id = part.substr(3);
      if (net.id.empty()) throw Error("--net '" + text + "': id= needs a name" + usage);
    } else if (part.rfind("bw=", 0) == 0) {
      net.rate_limit.bytes_per_second = parse_amount(part.substr(3), where + ": bw (bytes per second)", true);
      if (net.rate_limit.bytes_per_second == 0) throw Error(where + ": bw must be above 0 (leave it out for no limit)");
    } else if (part.rfind("pps=", 0) == 0) {
      net.rate_limit.ops_per_second = parse_amount(part.substr(4), where + ": pps (frames per second)", true);
      if (net.rate_limit.ops_per_second == 0) throw Error(where + ": pps must be above 0 (leave it out for no limit)");
    } else {
      throw Error("--net '" + text + "': unknown setting '" + part + "'" + usage);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (net.tap.empty() && !fd_given) throw Error("--net '" + text + "': needs tap=NAME or fd=N" + usage);
  if (!net.tap.empty() && fd_given) throw Error("--net '" + text + "': give tap=NAME or fd=N, not both" + usage);
  return net;
}

ConsoleConfig parse_console(const std::string& text) {
  if (text == "stdio") return {ConsoleKind::kStdio, ""};
  if (text == "pty") return {ConsoleKind::kPty, ""};
  if (text == "none") return {ConsoleKind::kNone, ""};
  if (text.rfind("file:", 0) == 0 && text.size() > 5) return {ConsoleKind::kFile, text.substr(5)};
  throw Error("--console must be stdio, pty, none or file:PATH, not '" + text + "'");
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
  if (backend == "stdio") hvc.backend = {ConsoleKind::kStdio, ""};
  else if (backend == "pty") hvc.backend = {ConsoleKind::kPty, ""};
  else if (backend == "none") hvc.backend = {ConsoleKind::kNone, ""};
  else if (backend.rfind("file:", 0) == 0 && backend.size() > 5) hvc.backend = {ConsoleKind::kFile, backend.substr(5)};
  else throw Error("--hvc must be stdio, pty, none or file:PATH (optionally ,id=NAME), not '" + text + "'");
  return hvc;
}

VsockConfig parse_vsock(const std::string& text) {
  const std::string usage = " (cid=N,socket=PATH[,id=ID])";
  VsockConfig vsock;
  bool cid_given = false;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (part.rfind("cid=", 0) == 0) {
      std::string value = part.substr(4);
      if (value.empty() || value.size() > 20 || value.find_first_not_of("0123456789") != std::string::npos)
        throw Error("--vsock '" + text + "': cid must be a number" + usage);
      vsock.guest_cid = std::stoull(value);
      cid_given = true;
    } else if (part.rfind("socket=", 0) == 0) {
      vsock.socket_path = part.substr(7);
    } else if (part.rfind("id=", 0) == 0) {
      vsock.id = part.substr(3);
    } else {
      throw Error("--vsock '" + text + "': unknown setting '" + part + "'" + usage);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (!cid_given) throw Error("--vsock '" + text + "': missing cid=" + usage);
  if (vsock.guest_cid < 3 || vsock.guest_cid > 0xfffffffeULL)
    throw Error("--vsock '" + text + "': cid " + std::to_string(vsock.guest_cid) +
                " is reserved or too large (3..4294967294)");
  if (vsock.socket_path.empty()) throw Error("--vsock '" + text + "': missing socket=PATH" + usage);
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
