// VmConfig parsing and validation.
#include "vmm/vm_config.h"

#include "base/error.h"

namespace kdom::vmm {

namespace {
// Guest RAM beyond this would need more than 46 bits of guest-physical address space.
constexpr uint64_t kMaxMemoryMib = uint64_t{64} * 1024 * 1024;
constexpr uint32_t kMaxVcpus = 255;  // xAPIC ids in the MADT are 8 bits
}  // namespace

DiskConfig parse_disk(const std::string& text) {
  DiskConfig disk;
  size_t start = 0;
  bool first = true;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (first) {
      disk.path = part;
      first = false;
    } else if (part == "ro") {
      disk.read_only = true;
    } else if (part.rfind("serial=", 0) == 0) {
      disk.serial = part.substr(7);
    } else {
      throw Error("--disk '" + text + "': unknown setting '" + part + "' (PATH[,ro][,serial=ID])");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (disk.path.empty()) throw Error("--disk needs a path (PATH[,ro][,serial=ID])");
  if (disk.serial.size() > 20) throw Error("--disk '" + text + "': serial is longer than 20 bytes");
  return disk;
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
  const std::string usage = " (tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX][,id=ID])";
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
  for (size_t i = 0; i < config.nets.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const NetConfig &a = config.nets[i], &b = config.nets[j];
      if (!a.tap.empty() && a.tap == b.tap) throw Error("--net: TAP '" + a.tap + "' is given twice");
      if (a.fd >= 0 && a.fd == b.fd) throw Error("--net: fd " + std::to_string(a.fd) + " is given twice");
      if (a.mac && b.mac && *a.mac == *b.mac) throw Error("--net: two interfaces have the same MAC address");
    }
}

}  // namespace kdom::vmm
