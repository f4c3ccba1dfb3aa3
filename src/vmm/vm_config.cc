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
  // num_pages is a 32-bit count of 4 KiB pages.
  if (config.balloon && config.balloon->target_mib >= uint64_t{16} * 1024 * 1024)
    throw Error("--balloon target " + std::to_string(config.balloon->target_mib) + " MiB is beyond the device's 16 TiB limit");
  if (config.balloon && config.balloon->target_mib > config.memory_mib)
    throw Error("--balloon target " + std::to_string(config.balloon->target_mib) + " MiB is larger than guest memory (" +
                std::to_string(config.memory_mib) + " MiB)");
}

}  // namespace kdom::vmm
