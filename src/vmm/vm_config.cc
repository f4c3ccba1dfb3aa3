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
}

}  // namespace kdom::vmm
