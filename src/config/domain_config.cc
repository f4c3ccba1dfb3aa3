// DomainConfig: lifecycle action names, the JSON form (strict: unknown keys and wrong types are
// refused, naming the key) and the checks every config passes before a domain is made from it.
#include "config/domain_config.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <cctype>
#include <initializer_list>
#include <limits>

#include "base/error.h"

namespace kdom::config {

namespace {

constexpr size_t kMaxNameLength = 64;
constexpr uint64_t kMaxMemoryMib = uint64_t{64} * 1024 * 1024;  // 64 TiB
constexpr uint32_t kMaxVcpus = 255;
// vsock CIDs 0-2 are the hypervisor, local and host; 2^32-1 is VMADDR_CID_ANY.
constexpr uint64_t kMinGuestCid = 3;
constexpr uint64_t kMaxGuestCid = (uint64_t{1} << 32) - 2;
constexpr size_t kMaxInterfaceNameLength = 15;  // IFNAMSIZ - 1

struct ActionName {
  LifecycleAction action;
  const char* name;
};
constexpr ActionName kActionNames[] = {
    {LifecycleAction::kDestroy, "destroy"},
    {LifecycleAction::kRestart, "restart"},
    {LifecycleAction::kPreserve, "preserve"},
    {LifecycleAction::kRenameRestart, "rename-restart"},
};

// Reads one JSON object with a fixed set of keys; `where` starts every error ("config",
// "config: disks[0]"). Absent and null keys take the caller's default.
class ObjectReader {
 public:
  ObjectReader(const nlohmann::json& json, std::string where, std::initializer_list<const char*> known_keys)
      : json_(json), where_(std::move(where)) {
    if (!json_.is_object()) throw Error(where_ + ": expected a JSON object");
    for (const auto& item : json_.items()) {
      const bool known = std::any_of(known_keys.begin(), known_keys.end(),
                                     [&](const char* key) { return item.key() == key; });
      if (!known) throw Error(where_ + ": unknown key '" + item.key() + "'");
    }
  }

  const nlohmann::json* find(const char* key) const {
    auto found = json_.find(key);
    if (found == json_.end() || found->is_null()) return nullptr;
    return &*found;
  }

  std::string string(const char* key, const std::string& fallback = "") const {
    const nlohmann::json* value = find(key);
    if (!value) return fallback;
    if (!value->is_string()) throw wrong_type(key, "a string");
    return value->get<std::string>();
  }

  std::optional<uint64_t> optional_number(const char* key, uint64_t max) const {
    const nlohmann::json* value = find(key);
    if (!value) return std::nullopt;
    uint64_t number = 0;
    if (value->is_number_unsigned()) {
      number = value->get<uint64_t>();
    } else if (value->is_number_integer() && value->get<int64_t>() >= 0) {
      number = static_cast<uint64_t>(value->get<int64_t>());
    } else {
      throw wrong_type(key, "a whole number");
    }
    if (number > max) throw Error(where_ + ": key '" + key + "' is too large (" + std::to_string(number) + ")");
    return number;
  }

  uint64_t number(const char* key, uint64_t fallback, uint64_t max = std::numeric_limits<uint64_t>::max()) const {
    return optional_number(key, max).value_or(fallback);
  }

  bool boolean(const char* key, bool fallback) const {
    const nlohmann::json* value = find(key);
    if (!value) return fallback;
    if (!value->is_boolean()) throw wrong_type(key, "true or false");
    return value->get<bool>();
  }

  LifecycleAction action(const char* key, LifecycleAction fallback) const {
    if (!find(key)) return fallback;
    const std::string text = string(key);
    try {
      return parse_lifecycle_action(text);
    } catch (const Error& error) {
      throw Error(where_ + ": key '" + key + "': " + error.what());
    }
  }

  const nlohmann::json* array(const char* key) const {
    const nlohmann::json* value = find(key);
    if (value && !value->is_array()) throw wrong_type(key, "an array");
    return value;
  }

 private:
  Error wrong_type(const char* key, const char* expected) const {
    return Error(where_ + ": key '" + key + "' must be " + expected);
  }

  const nlohmann::json& json_;
  std::string where_;
};

bool is_hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

void validate_name(const std::string& name) {
  if (name.empty()) throw Error("the domain name is empty");
  if (name.size() > kMaxNameLength)
    throw Error("the domain name '" + name + "' is longer than " + std::to_string(kMaxNameLength) + " characters");
  for (char c : name) {
    const bool allowed = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    if (!allowed) throw Error("the domain name '" + name + "' may only contain letters, digits, '.', '_' and '-'");
  }
  // Commands name a domain by its name or its numeric id: an all-digit name would be ambiguous.
  if (std::all_of(name.begin(), name.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    throw Error("the domain name '" + name + "' is all digits (it would read as a domain id)");
  if (name == "Domain-0") throw Error("the domain name 'Domain-0' is reserved");
}

void validate_uuid(const std::string& uuid) {
  if (uuid.empty()) return;
  constexpr size_t kDashes[] = {8, 13, 18, 23};
  bool good = uuid.size() == 36;
  for (size_t i = 0; good && i < uuid.size(); ++i) {
    const bool dash_here = std::find(std::begin(kDashes), std::end(kDashes), i) != std::end(kDashes);
    good = dash_here ? uuid[i] == '-' : is_hex(uuid[i]);
  }
  if (!good) throw Error("uuid '" + uuid + "' is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex)");
}

void validate_interface_name(const std::string& name, const char* what) {
  if (name.size() > kMaxInterfaceNameLength)
    throw Error(std::string(what) + " '" + name + "' is longer than " + std::to_string(kMaxInterfaceNameLength) +
                " characters");
  if (name.find_first_of("/ \t\n") != std::string::npos)
    throw Error(std::string(what) + " '" + name + "' is not a valid interface name");
}

}  // namespace

LifecycleAction parse_lifecycle_action(const std::string& text) {
  for (const auto& entry : kActionNames)
    if (text == entry.name) return entry.action;
  throw Error("unknown lifecycle action '" + text + "' (known: destroy, restart, preserve, rename-restart)");
}

const char* lifecycle_action_name(LifecycleAction action) {
  for (const auto& entry : kActionNames)
    if (action == entry.action) return entry.name;
  return "unknown";
}

nlohmann::json to_json(const DomainConfig& config) {
  nlohmann::json disks = nlohmann::json::array();
  for (const auto& disk : config.disks)
    disks.push_back(
        {{"target", disk.target}, {"vdev", disk.vdev}, {"read_only", disk.read_only}, {"shared", disk.shared}});
  nlohmann::json vifs = nlohmann::json::array();
  for (const auto& vif : config.vifs) {
    nlohmann::json json = {{"devid", vif.devid},
                           {"bridge", vif.bridge},
                           {"tap", vif.tap},
                           {"ip", vif.ip},
                           {"rate_bytes_per_second", vif.rate_bytes_per_second}};
    if (vif.mac) json["mac"] = *vif.mac;
    vifs.push_back(std::move(json));
  }
  nlohmann::json json = {
      {"name", config.name},
      {"uuid", config.uuid},
      {"memory_mib", config.memory_mib},
      {"maxmem_mib", config.maxmem_mib},
      {"vcpus", config.vcpus},
      {"maxvcpus", config.maxvcpus},
      {"kernel", config.kernel},
      {"ramdisk", config.ramdisk},
      {"cmdline", config.cmdline},
      {"on_poweroff", lifecycle_action_name(config.on_poweroff)},
      {"on_reboot", lifecycle_action_name(config.on_reboot)},
      {"on_crash", lifecycle_action_name(config.on_crash)},
      {"disks", std::move(disks)},
      {"vifs", std::move(vifs)},
      {"rng", config.rng},
  };
  if (config.balloon_stats_seconds) json["balloon_stats_seconds"] = *config.balloon_stats_seconds;
  if (config.vsock_cid) json["vsock_cid"] = *config.vsock_cid;
  return json;
}

DiskSpec disk_spec_from_json(const nlohmann::json& json, const std::string& where) {
  const ObjectReader disk(json, where, {"target", "vdev", "read_only", "shared"});
  return {disk.string("target"), disk.string("vdev"), disk.boolean("read_only", false), disk.boolean("shared", false)};
}

VifSpec vif_spec_from_json(const nlohmann::json& json, const std::string& where, uint32_t default_devid) {
  const ObjectReader vif(json, where, {"devid", "mac", "bridge", "tap", "ip", "rate_bytes_per_second"});
  VifSpec spec;
  spec.devid = static_cast<uint32_t>(vif.number("devid", default_devid, UINT32_MAX));
  if (vif.find("mac")) spec.mac = vif.string("mac");
  spec.bridge = vif.string("bridge");
  spec.tap = vif.string("tap");
  spec.ip = vif.string("ip");
  spec.rate_bytes_per_second = vif.number("rate_bytes_per_second", 0);
  return spec;
}

DomainConfig domain_config_from_json(const nlohmann::json& json) {
  const ObjectReader reader(json, "config",
                            {"name", "uuid", "memory_mib", "maxmem_mib", "vcpus", "maxvcpus", "kernel", "ramdisk",
                             "cmdline", "on_poweroff", "on_reboot", "on_crash", "disks", "vifs", "rng",
                             "balloon_stats_seconds", "vsock_cid"});
  DomainConfig config;
  config.name = reader.string("name");
  config.uuid = reader.string("uuid");
  config.memory_mib = reader.number("memory_mib", config.memory_mib);
  config.maxmem_mib = reader.number("maxmem_mib", config.maxmem_mib);
  config.vcpus = static_cast<uint32_t>(reader.number("vcpus", config.vcpus, UINT32_MAX));
  config.maxvcpus = static_cast<uint32_t>(reader.number("maxvcpus", config.maxvcpus, UINT32_MAX));
  config.kernel = reader.string("kernel");
  config.ramdisk = reader.string("ramdisk");
  config.cmdline = reader.string("cmdline");
  config.on_poweroff = reader.action("on_poweroff", config.on_poweroff);
  config.on_reboot = reader.action("on_reboot", config.on_reboot);
  config.on_crash = reader.action("on_crash", config.on_crash);
  if (const nlohmann::json* disks = reader.array("disks"))
    for (size_t i = 0; i < disks->size(); ++i)
      config.disks.push_back(disk_spec_from_json(disks->at(i), "config: disks[" + std::to_string(i) + "]"));
  if (const nlohmann::json* vifs = reader.array("vifs"))
    for (size_t i = 0; i < vifs->size(); ++i)
      // Configs from before NICs had numbers: their place in the list.
      config.vifs.push_back(vif_spec_from_json(vifs->at(i), "config: vifs[" + std::to_string(i) + "]", i));
  config.rng = reader.boolean("rng", config.rng);
  config.balloon_stats_seconds = reader.optional_number("balloon_stats_seconds", UINT32_MAX);
  config.vsock_cid = reader.optional_number("vsock_cid", std::numeric_limits<uint64_t>::max());
  return config;
}

void validate_vdev(const std::string& vdev) {
  // xl's names for a disk: xvdX, hdX, sdX or vdX (X: one to three letters).
  size_t prefix = 0;
  for (const char* known : {"xvd", "hd", "sd", "vd"})
    if (vdev.rfind(known, 0) == 0) prefix = std::string_view(known).size();
  const std::string letters = vdev.substr(prefix);
  const bool good = prefix > 0 && !letters.empty() && letters.size() <= 3 &&
                    std::all_of(letters.begin(), letters.end(), [](char c) { return c >= 'a' && c <= 'z'; });
  if (!good) throw Error("disk name (vdev) '" + vdev + "' is not like xvdb, vdb, sdb or hdb");
}

void assign_device_names(DomainConfig& config) {
  // A NIC without a MAC gets a random locally administered one (02:6b:64 is "kd"), kept in
  // its config: stable across restarts, and unlike kdom run's fixed defaults, distinct between
  // the domains on one bridge.
  std::random_device random;
  for (auto& vif : config.vifs) {
    if (vif.mac) continue;
    char text[18];
    const uint32_t bits = random();
    std::snprintf(text, sizeof(text), "02:6b:64:%02x:%02x:%02x", bits & 0xff, (bits >> 8) & 0xff, (bits >> 16) & 0xff);
    vif.mac = text;
  }
  for (auto& disk : config.disks) {
    if (!disk.vdev.empty()) continue;
    for (char letter = 'a'; letter <= 'z' && disk.vdev.empty(); ++letter) {
      const std::string candidate = std::string("xvd") + letter;
      if (std::none_of(config.disks.begin(), config.disks.end(), [&](const DiskSpec& d) { return d.vdev == candidate; }))
        disk.vdev = candidate;
    }
    if (disk.vdev.empty()) throw Error("no free disk name xvda-xvdz: give the disk a vdev");
  }
}

uint32_t next_devid(const DomainConfig& config) {
  uint32_t devid = 0;
  while (std::any_of(config.vifs.begin(), config.vifs.end(), [&](const VifSpec& v) { return v.devid == devid; }))
    ++devid;
  return devid;
}

void validate_mac(const std::string& mac) {
  bool good = mac.size() == 17;
  for (size_t i = 0; good && i < mac.size(); ++i) good = (i % 3 == 2) ? mac[i] == ':' : is_hex(mac[i]);
  if (!good) throw Error("MAC address '" + mac + "' is not six hex bytes separated by ':'");
  if (std::stoul(mac.substr(0, 2), nullptr, 16) & 1)
    throw Error("MAC address '" + mac + "' is a multicast address (the low bit of its first byte is set)");
}

void validate(const DomainConfig& config) {
  validate_name(config.name);
  validate_uuid(config.uuid);
  if (config.memory_mib == 0 || config.memory_mib > kMaxMemoryMib)
    throw Error("memory " + std::to_string(config.memory_mib) + " MiB is out of range (1 to " +
                std::to_string(kMaxMemoryMib) + ")");
  if (config.maxmem_mib != 0 && (config.maxmem_mib < config.memory_mib || config.maxmem_mib > kMaxMemoryMib))
    throw Error("maxmem " + std::to_string(config.maxmem_mib) + " MiB is out of range (memory " +
                std::to_string(config.memory_mib) + " to " + std::to_string(kMaxMemoryMib) + ")");
  if (config.vcpus == 0 || config.vcpus > kMaxVcpus)
    throw Error("vcpus " + std::to_string(config.vcpus) + " is out of range (1 to " + std::to_string(kMaxVcpus) +
                ")");
  if (config.maxvcpus != 0 && (config.maxvcpus < config.vcpus || config.maxvcpus > kMaxVcpus))
    throw Error("maxvcpus " + std::to_string(config.maxvcpus) + " is out of range (vcpus " +
                std::to_string(config.vcpus) + " to " + std::to_string(kMaxVcpus) + ")");
  if (config.kernel.empty()) throw Error("no kernel given");
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const auto& disk = config.disks[i];
    if (disk.target.empty()) throw Error("disk " + std::to_string(i) + " has no target (image path)");
    if (disk.vdev.empty()) continue;
    validate_vdev(disk.vdev);
    for (size_t j = 0; j < i; ++j)
      if (config.disks[j].vdev == disk.vdev) throw Error("disk name (vdev) '" + disk.vdev + "' is given twice");
  }
  for (size_t i = 0; i < config.vifs.size(); ++i) {
    const auto& vif = config.vifs[i];
    if (vif.devid > kMaxDevid)
      throw Error("vif number (devid) " + std::to_string(vif.devid) + " is out of range (0 to " +
                  std::to_string(kMaxDevid) + ")");
    for (size_t j = 0; j < i; ++j)
      if (config.vifs[j].devid == vif.devid)
        throw Error("vif number (devid) " + std::to_string(vif.devid) + " is given twice");
    if (vif.mac) validate_mac(*vif.mac);
    validate_interface_name(vif.bridge, "bridge");
    validate_interface_name(vif.tap, "TAP name");
  }
  if (config.balloon_stats_seconds && *config.balloon_stats_seconds > UINT32_MAX)
    throw Error("balloon statistics interval " + std::to_string(*config.balloon_stats_seconds) + " s is too large");
  if (config.vsock_cid && (*config.vsock_cid < kMinGuestCid || *config.vsock_cid > kMaxGuestCid))
    throw Error("vsock CID " + std::to_string(*config.vsock_cid) + " is out of range (" +
                std::to_string(kMinGuestCid) + " to " + std::to_string(kMaxGuestCid) + ")");
}

}  // namespace kdom::config
