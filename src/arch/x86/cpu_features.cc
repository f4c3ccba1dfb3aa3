// CPUID feature bits by name (Intel SDM vol. 2A, CPUID; AMD APM vol. 3), and the comparison.
#include "arch/x86/cpu_features.h"

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>

namespace kdom::x86 {

namespace {

enum Register { kEax, kEbx, kEcx, kEdx };

struct FeatureWord {
  uint32_t function;
  uint32_t index;
  Register reg;
  const char* register_name;
  uint32_t ignored;  // bits that describe the vCPU or the OS, not the CPU
  std::map<int, const char*> names;
};

// Leaf 1 ECX bit 27 is OSXSAVE (the OS's CR4 bit) and bit 31 the hypervisor bit.
const std::vector<FeatureWord>& feature_words() {
  static const std::vector<FeatureWord> words = {
      {1, 0, kEdx, "edx", 0,
       {{0, "fpu"},   {4, "tsc"},   {5, "msr"},    {6, "pae"},   {8, "cx8"},    {9, "apic"},   {11, "sep"},
        {12, "mtrr"}, {13, "pge"},  {15, "cmov"},  {16, "pat"},  {19, "clflush"}, {23, "mmx"}, {24, "fxsr"},
        {25, "sse"},  {26, "sse2"}}},
      {1, 0, kEcx, "ecx", (1u << 27) | (1u << 31),
       {{0, "sse3"},   {1, "pclmulqdq"}, {9, "ssse3"},   {12, "fma"},  {13, "cx16"},  {19, "sse4_1"},
        {20, "sse4_2"}, {21, "x2apic"},  {22, "movbe"},  {23, "popcnt"}, {24, "tsc_deadline_timer"},
        {25, "aes"},   {26, "xsave"},    {28, "avx"},    {29, "f16c"}, {30, "rdrand"}}},
      {7, 0, kEbx, "ebx", 0,
       {{0, "fsgsbase"}, {3, "bmi1"},     {5, "avx2"},     {7, "smep"},     {8, "bmi2"},    {9, "erms"},
        {10, "invpcid"}, {16, "avx512f"}, {17, "avx512dq"}, {18, "rdseed"}, {19, "adx"},    {20, "smap"},
        {21, "avx512ifma"}, {23, "clflushopt"}, {24, "clwb"}, {28, "avx512cd"}, {29, "sha_ni"},
        {30, "avx512bw"}, {31, "avx512vl"}}},
      {7, 0, kEcx, "ecx", 0,
       {{1, "avx512vbmi"}, {2, "umip"}, {3, "pku"}, {5, "waitpkg"}, {6, "avx512_vbmi2"}, {8, "gfni"},
        {9, "vaes"}, {10, "vpclmulqdq"}, {11, "avx512_vnni"}, {12, "avx512_bitalg"}, {14, "avx512_vpopcntdq"},
        {22, "rdpid"}, {25, "cldemote"}, {27, "movdiri"}, {28, "movdir64b"}}},
      {7, 0, kEdx, "edx", 0,
       {{4, "fsrm"}, {8, "avx512_vp2intersect"}, {14, "serialize"}, {22, "amx_bf16"}, {24, "amx_tile"},
        {25, "amx_int8"}}},
      {0xd, 1, kEax, "eax", 0, {{0, "xsaveopt"}, {1, "xsavec"}, {2, "xgetbv1"}, {3, "xsaves"}}},
      {0x80000001, 0, kEcx, "ecx", 0,
       {{0, "lahf_lm"}, {5, "abm"}, {6, "sse4a"}, {8, "3dnowprefetch"}, {11, "xop"}, {16, "fma4"}, {21, "tbm"}}},
      {0x80000001, 0, kEdx, "edx", 0, {{11, "syscall"}, {20, "nx"}, {26, "pdpe1gb"}, {27, "rdtscp"}, {29, "lm"}}},
  };
  return words;
}

std::optional<uint32_t> value_of(const std::vector<kvm_cpuid_entry2>& table, const FeatureWord& word) {
  for (const auto& entry : table) {
    if (entry.function != word.function) continue;
    // An index only matters where KVM says the leaf has subleaves.
    if ((entry.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && entry.index != word.index) continue;
    switch (word.reg) {
      case kEax: return entry.eax;
      case kEbx: return entry.ebx;
      case kEcx: return entry.ecx;
      case kEdx: return entry.edx;
    }
  }
  return std::nullopt;
}

std::string hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "%#x", value);
  return text;
}

}  // namespace

std::vector<std::string> missing_cpu_features(const std::vector<kvm_cpuid_entry2>& guest,
                                              const std::vector<kvm_cpuid_entry2>& host) {
  std::vector<std::string> missing;
  for (const auto& word : feature_words()) {
    const uint32_t shown = value_of(guest, word).value_or(0) & ~word.ignored;
    const uint32_t lacking = shown & ~value_of(host, word).value_or(0);
    for (int bit = 0; bit < 32; ++bit) {
      if (!(lacking & (1u << bit))) continue;
      auto name = word.names.find(bit);
      missing.push_back(name != word.names.end() ? std::string(name->second)
                                                 : "leaf " + hex(word.function) + "." + std::to_string(word.index) + " " +
                                                       word.register_name + " bit " + std::to_string(bit));
    }
  }
  return missing;
}

}  // namespace kdom::x86
