// VmConfig as a JSON document and back. Reading is strict: an unknown key or a value of the
// wrong type is refused with its key path ("config: disks[1].queues must be a number"), since
// a supervisor's typo should fail the start, not silently boot another machine.
#include "vmm/vm_config_json.h"

#include <cstdio>
#include <functional>
#include <set>

#include "base/error.h"

namespace kdom::vmm {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxDiskQueues = 64;
constexpr uint64_t kMaxDiskPollMicros = 1000;
constexpr uint64_t kMaxBalloonStatsSeconds = 86400;

const char* console_kind_name(ConsoleKind kind) {
  switch (kind) {
    case ConsoleKind::kStdio: return "stdio";
    case ConsoleKind::kPty: return "pty";
    case ConsoleKind::kFile: return "file";
    case ConsoleKind::kNone: return "none";
    case ConsoleKind::kSocket: return "socket";
  }
  return "none";
}

std::string mac_text(const std::array<uint8_t, 6>& mac) {
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return text;
}

json console_json(const ConsoleConfig& console) {
  json out = {{"kind", console_kind_name(console.kind)}};
  if (console.kind == ConsoleKind::kFile || console.kind == ConsoleKind::kSocket) out["path"] = console.path;
  return out;
}

json rate_limit_json(const devices::RateLimit& limit) {
  return {{"bytes_per_second", limit.bytes_per_second}, {"ops_per_second", limit.ops_per_second}};
}

// One JSON object being read: each member is taken by name with its expected type, and
// finish() refuses whatever member was not taken.
class ObjectReader {
 public:
  ObjectReader(const json& value, std::string path) : value_(value), path_(std::move(path)) {
    if (!value_.is_object()) throw Error(where() + " must be an object");
  }

  // The member `key`, or null when it is absent (or JSON null).
  const json* find(const std::string& key) {
    taken_.insert(key);
    auto it = value_.find(key);
    if (it == value_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  // Members of the document's root are named without a leading dot.
  std::string path_of(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  void string(const std::string& key, std::string& out) {
    if (const json* member = find(key)) {
      if (!member->is_string()) throw Error("config: " + path_of(key) + " must be a string");
      out = member->get<std::string>();
    }
  }
  void boolean(const std::string& key, bool& out) {
    if (const json* member = find(key)) {
      if (!member->is_boolean()) throw Error("config: " + path_of(key) + " must be true or false");
      out = member->get<bool>();
    }
  }
  template <typename Number>
  void number(const std::string& key, Number& out, uint64_t min, uint64_t max) {
    if (const json* member = find(key)) {
      if (!member->is_number()) throw Error("config: " + path_of(key) + " must be a number");
      // Built in code rather than parsed, a non-negative number may be a signed integer.
      if (!member->is_number_integer() || (!member->is_number_unsigned() && member->get<int64_t>() < 0))
        throw Error("config: " + path_of(key) + " must be a whole number from " + std::to_string(min) + " to " +
                    std::to_string(max));
      const uint64_t value = member->get<uint64_t>();
      if (value < min || value > max)
        throw Error("config: " + path_of(key) + " must be a whole number from " + std::to_string(min) + " to " +
                    std::to_string(max) + ", not " + std::to_string(value));
      out = static_cast<Number>(value);
    }
  }
  void finish() const {
    for (auto it = value_.begin(); it != value_.end(); ++it)
      if (!taken_.count(it.key())) throw Error("config: unknown key " + path_of(it.key()));
  }

 private:
  std::string where() const { return "config: " + (path_.empty() ? std::string("the document") : path_); }

  const json& value_;
  std::string path_;
  std::set<std::string> taken_;
};

ConsoleConfig console_from(const json& value, const std::string& path) {
  ObjectReader reader(value, path);
  ConsoleConfig console;
  std::string kind;
  const json* kind_member = reader.find("kind");
  if (!kind_member) throw Error("config: " + path + ".kind is missing (stdio, pty, none, file or socket)");
  if (!kind_member->is_string()) throw Error("config: " + path + ".kind must be a string");
  kind = kind_member->get<std::string>();
  if (kind == "stdio") console.kind = ConsoleKind::kStdio;
  else if (kind == "pty") console.kind = ConsoleKind::kPty;
  else if (kind == "none") console.kind = ConsoleKind::kNone;
  else if (kind == "file") console.kind = ConsoleKind::kFile;
  else if (kind == "socket") console.kind = ConsoleKind::kSocket;
  else throw Error("config: " + path + ".kind must be stdio, pty, none, file or socket, not '" + kind + "'");
  reader.string("path", console.path);
  const bool needs_path = console.kind == ConsoleKind::kFile || console.kind == ConsoleKind::kSocket;
  if (needs_path && console.path.empty()) throw Error("config: " + path + ".path is needed for a " + kind + " console");
  if (!needs_path && !console.path.empty())
    throw Error("config: " + path + ".path is only for file and socket consoles");
  reader.finish();
  return console;
}

void rate_limit_from(ObjectReader& parent, const std::string& key, devices::RateLimit& limit) {
  const json* value = parent.find(key);
  if (!value) return;
  ObjectReader reader(*value, parent.path_of(key));
  reader.number("bytes_per_second", limit.bytes_per_second, 0, UINT64_MAX);
  reader.number("ops_per_second", limit.ops_per_second, 0, UINT64_MAX);
  reader.finish();
}

}  // namespace

DiskConfig disk_config_from_json(const json& value, const std::string& path) {
  ObjectReader reader(value, path);
  DiskConfig disk;
  reader.string("path", disk.path);
  if (disk.path.empty()) throw Error("config: " + path + ".path is missing");
  reader.boolean("read_only", disk.read_only);
  reader.boolean("shared", disk.shared);
  reader.string("serial", disk.serial);
  if (disk.serial.size() > 20) throw Error("config: " + path + ".serial is longer than 20 bytes");
  reader.string("id", disk.id);
  reader.number("queues", disk.queues, 1, kMaxDiskQueues);
  rate_limit_from(reader, "rate_limit", disk.rate_limit);
  reader.number("poll_us", disk.poll_us, 0, kMaxDiskPollMicros);
  reader.finish();
  return disk;
}

NetConfig net_config_from_json(const json& value, const std::string& path) {
  ObjectReader reader(value, path);
  NetConfig net;
  reader.string("tap", net.tap);
  if (const json* fd = reader.find("fd")) {
    // A document cannot carry an open file descriptor; -1 is what to_json writes for none.
    if (!(fd->is_number_integer() && fd->get<int64_t>() == -1))
      throw Error("config: " + path + ".fd cannot be given in a config document (only -1: none); use tap");
  }
  if (net.tap.empty()) throw Error("config: " + path + ".tap is missing (the TAP interface's name)");
  if (const json* mac = reader.find("mac")) {
    if (!mac->is_string()) throw Error("config: " + path + ".mac must be a string");
    try {
      net.mac = parse_mac(mac->get<std::string>());
    } catch (const Error& error) {
      throw Error("config: " + path + ".mac: " + error.what());
    }
  }
  reader.string("id", net.id);
  rate_limit_from(reader, "rate_limit", net.rate_limit);
  reader.finish();
  return net;
}

namespace {

template <typename Item>
std::vector<Item> array_from(ObjectReader& parent, const std::string& key,
                             const std::function<Item(const json&, const std::string&)>& read_item) {
  std::vector<Item> items;
  const json* value = parent.find(key);
  if (!value) return items;
  if (!value->is_array()) throw Error("config: " + key + " must be an array");
  for (size_t i = 0; i < value->size(); ++i) items.push_back(read_item((*value)[i], key + "[" + std::to_string(i) + "]"));
  return items;
}

}  // namespace

json to_json(const DiskConfig& disk) {
  return {{"path", disk.path},   {"read_only", disk.read_only}, {"shared", disk.shared},
          {"serial", disk.serial}, {"id", disk.id},             {"queues", disk.queues},
          {"rate_limit", rate_limit_json(disk.rate_limit)},     {"poll_us", disk.poll_us}};
}

json to_json(const NetConfig& net) {
  if (net.fd >= 0) throw Error("net '" + net.id + "' is an open fd, which a config document cannot carry");
  return {{"tap", net.tap},
          {"mac", net.mac ? json(mac_text(*net.mac)) : json(nullptr)},
          {"id", net.id},
          {"rate_limit", rate_limit_json(net.rate_limit)}};
}

json to_json(const VmConfig& config) {
  json out = {
      {"kernel_path", config.kernel_path},
      {"initrd_path", config.initrd_path ? json(*config.initrd_path) : json(nullptr)},
      {"cmdline", config.cmdline},
      {"memory_mib", config.memory_mib},
      {"vcpus", config.vcpus},
      {"console", console_json(config.console)},
      {"disks", json::array()},
      {"entropy", config.entropy},
      {"hvc", nullptr},
      {"vsock", nullptr},
      {"balloon", nullptr},
      {"control_path", config.control_path},
      {"nets", json::array()},
  };
  for (const auto& disk : config.disks) out["disks"].push_back(to_json(disk));
  if (config.hvc) out["hvc"] = {{"backend", console_json(config.hvc->backend)}, {"id", config.hvc->id}};
  if (config.vsock)
    out["vsock"] = {{"guest_cid", config.vsock->guest_cid},
                    {"socket_path", config.vsock->socket_path},
                    {"id", config.vsock->id}};
  if (config.balloon)
    out["balloon"] = {{"target_mib", config.balloon->target_mib},
                      {"stats_seconds", config.balloon->stats_seconds},
                      {"deflate_on_oom", config.balloon->deflate_on_oom},
                      {"free_page_reporting", config.balloon->free_page_reporting},
                      {"id", config.balloon->id}};
  for (const auto& net : config.nets) out["nets"].push_back(to_json(net));
  return out;
}

VmConfig vm_config_from_json(const json& document) {
  if (!document.is_object()) throw Error("config: the document must be a JSON object");
  ObjectReader root(document, "");
  VmConfig config;
  root.string("kernel_path", config.kernel_path);
  std::string initrd;
  root.string("initrd_path", initrd);
  if (!initrd.empty()) config.initrd_path = initrd;
  root.string("cmdline", config.cmdline);
  root.number("memory_mib", config.memory_mib, 1, UINT64_MAX);
  root.number("vcpus", config.vcpus, 1, UINT32_MAX);
  if (const json* console = root.find("console")) config.console = console_from(*console, "console");
  config.disks = array_from<DiskConfig>(root, "disks", disk_config_from_json);
  root.boolean("entropy", config.entropy);
  if (const json* hvc = root.find("hvc")) {
    ObjectReader reader(*hvc, "hvc");
    VirtioConsoleConfig out;
    const json* backend = reader.find("backend");
    if (!backend) throw Error("config: hvc.backend is missing");
    out.backend = console_from(*backend, "hvc.backend");
    reader.string("id", out.id);
    reader.finish();
    config.hvc = out;
  }
  if (const json* vsock = root.find("vsock")) {
    ObjectReader reader(*vsock, "vsock");
    VsockConfig out;
    if (!reader.find("guest_cid")) throw Error("config: vsock.guest_cid is missing");
    reader.number("guest_cid", out.guest_cid, 3, 0xfffffffeULL);
    reader.string("socket_path", out.socket_path);
    if (out.socket_path.empty()) throw Error("config: vsock.socket_path is missing");
    reader.string("id", out.id);
    reader.finish();
    config.vsock = out;
  }
  if (const json* balloon = root.find("balloon")) {
    ObjectReader reader(*balloon, "balloon");
    BalloonConfig out;
    reader.number("target_mib", out.target_mib, 0, UINT64_MAX);
    reader.number("stats_seconds", out.stats_seconds, 0, kMaxBalloonStatsSeconds);
    reader.boolean("deflate_on_oom", out.deflate_on_oom);
    reader.boolean("free_page_reporting", out.free_page_reporting);
    reader.string("id", out.id);
    reader.finish();
    config.balloon = out;
  }
  root.string("control_path", config.control_path);
  config.nets = array_from<NetConfig>(root, "nets", net_config_from_json);
  root.finish();
  try {
    validate(config);
  } catch (const Error& error) {
    throw Error(std::string("config: ") + error.what());
  }
  return config;
}

}  // namespace kdom::vmm
