// Host facts: building them, reading the guest's CPU model back, and the restore's CPU check.
#include "snapshot/host_facts.h"

#include <cpuid.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "arch/x86/cpu_features.h"
#include "snapshot/stream.h"

namespace kdom::snapshot {

namespace {

constexpr size_t kMaxCpuidEntries = 256;

// The host CPU's brand string (CPUID 0x80000002-4), e.g. "AMD EPYC 7B13 64-Core Processor".
std::string cpu_brand() {
  unsigned int max = __get_cpuid_max(0x80000000, nullptr);
  if (max < 0x80000004) return "unknown";
  char brand[49] = {};
  for (unsigned int i = 0; i < 3; ++i) {
    unsigned int regs[4];
    __get_cpuid(0x80000002 + i, &regs[0], &regs[1], &regs[2], &regs[3]);
    std::memcpy(brand + 16 * i, regs, 16);
  }
  std::string text(brand);
  const size_t first = text.find_first_not_of(' ');
  return first == std::string::npos ? "unknown" : text.substr(first);
}

uint32_t field(const nlohmann::json& entry, const char* key) {
  auto it = entry.find(key);
  if (it == entry.end() || !it->is_number_unsigned() || it->get<uint64_t>() > UINT32_MAX)
    throw StreamError("host facts: a CPUID entry's \"" + std::string(key) + "\" is not a 32-bit number");
  return static_cast<uint32_t>(it->get<uint64_t>());
}

}  // namespace

nlohmann::json host_facts(const std::string& kdom_version, const std::vector<kvm_cpuid_entry2>& guest_cpuid) {
  char hostname[256] = {};
  ::gethostname(hostname, sizeof(hostname) - 1);
  nlohmann::json cpuid = nlohmann::json::array();
  for (const auto& entry : guest_cpuid)
    cpuid.push_back({{"function", entry.function},
                     {"index", entry.index},
                     {"flags", entry.flags},
                     {"eax", entry.eax},
                     {"ebx", entry.ebx},
                     {"ecx", entry.ecx},
                     {"edx", entry.edx}});
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return {{"kdom_version", kdom_version},
          {"host", hostname},
          {"cpu", cpu_brand()},
          {"saved_at_unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now).count()},
          {"guest_cpuid", cpuid}};
}

std::vector<kvm_cpuid_entry2> guest_cpuid_of(const nlohmann::json& facts) {
  if (!facts.is_object()) throw StreamError("host facts: not a JSON object");
  auto table = facts.find("guest_cpuid");
  if (table == facts.end() || !table->is_array()) throw StreamError("host facts: no \"guest_cpuid\" list");
  if (table->size() > kMaxCpuidEntries)
    throw StreamError("host facts: " + std::to_string(table->size()) + " CPUID entries (at most " +
                      std::to_string(kMaxCpuidEntries) + ")");
  std::vector<kvm_cpuid_entry2> entries;
  for (const auto& item : *table) {
    if (!item.is_object()) throw StreamError("host facts: a CPUID entry is not an object");
    kvm_cpuid_entry2 entry{};
    entry.function = field(item, "function");
    entry.index = field(item, "index");
    entry.flags = field(item, "flags");
    entry.eax = field(item, "eax");
    entry.ebx = field(item, "ebx");
    entry.ecx = field(item, "ecx");
    entry.edx = field(item, "edx");
    entries.push_back(entry);
  }
  return entries;
}

void check_cpu_model(const nlohmann::json& facts, const std::vector<kvm_cpuid_entry2>& host_cpuid) {
  const auto missing = x86::missing_cpu_features(guest_cpuid_of(facts), host_cpuid);
  if (missing.empty()) return;
  std::string names;
  for (const auto& name : missing) names += (names.empty() ? "" : ", ") + name;
  std::string cpu = "an unknown CPU";
  if (auto it = facts.find("cpu"); it != facts.end() && it->is_string()) cpu = it->get<std::string>();
  throw StreamError("the saved guest uses CPU features this host lacks: " + names + " (saved on " + cpu + ")");
}

}  // namespace kdom::snapshot
