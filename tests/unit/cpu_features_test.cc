// Tests of the CPU feature comparison a restore makes: features the guest saw that the host
// lacks are named (or given by leaf, register and bit), subleaves are told apart, and the bits
// that describe the vCPU or its OS rather than the CPU are not compared.
#include "arch/x86/cpu_features.h"

#include <gtest/gtest.h>

namespace kdom::x86 {
namespace {

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index, uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx,
                      bool indexed = false) {
  kvm_cpuid_entry2 entry{};
  entry.function = function;
  entry.index = index;
  entry.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
  entry.eax = eax;
  entry.ebx = ebx;
  entry.ecx = ecx;
  entry.edx = edx;
  return entry;
}

using Names = std::vector<std::string>;

TEST(CpuFeatures, TheSameCpuLacksNothing) {
  const std::vector<kvm_cpuid_entry2> cpu = {leaf(1, 0, 0, 0, 0x1ff8a3ff, 0x078bfbff),
                                             leaf(7, 0, 0, 0x219c07ab, 0x0040069c, 0x10, true)};
  EXPECT_EQ(missing_cpu_features(cpu, cpu), Names{});
}

TEST(CpuFeatures, FeaturesTheHostLacksAreNamedInLeafOrder) {
  const std::vector<kvm_cpuid_entry2> guest = {
      leaf(1, 0, 0, 0, (1u << 28) | (1u << 25), 1u << 26),               // avx, aes; sse2
      leaf(7, 0, 0, (1u << 16) | (1u << 5) | (1u << 22), 0, 0, true),    // avx512f, avx2, bit 22
      leaf(0x80000001, 0, 0, 0, 0, 1u << 27)};                           // rdtscp
  const std::vector<kvm_cpuid_entry2> host = {leaf(1, 0, 0, 0, 1u << 25, 1u << 26),
                                              leaf(7, 0, 0, 1u << 5, 0, 0, true)};
  EXPECT_EQ(missing_cpu_features(guest, host), (Names{"avx", "avx512f", "leaf 0x7.0 ebx bit 22", "rdtscp"}));
}

TEST(CpuFeatures, SubleavesAreToldApart) {
  // Leaf 7 subleaf 1 has other bits: a host whose subleaf 0 has them does not count.
  const std::vector<kvm_cpuid_entry2> guest = {leaf(7, 0, 0, 1u << 16, 0, 0, true)};
  const std::vector<kvm_cpuid_entry2> host = {leaf(7, 1, 0, 1u << 16, 0, 0, true), leaf(7, 0, 0, 0, 0, 0, true)};
  EXPECT_EQ(missing_cpu_features(guest, host), Names{"avx512f"});
  const std::vector<kvm_cpuid_entry2> xsave_guest = {leaf(0xd, 1, 0xf, 0, 0, 0, true)};
  const std::vector<kvm_cpuid_entry2> xsave_host = {leaf(0xd, 0, 0xf, 0, 0, 0, true), leaf(0xd, 1, 0x7, 0, 0, 0, true)};
  EXPECT_EQ(missing_cpu_features(xsave_guest, xsave_host), Names{"xsaves"});
}

TEST(CpuFeatures, VcpuAndOsBitsAreNotCompared) {
  // OSXSAVE (the OS's CR4 bit) and the hypervisor bit are the vCPU's, not the CPU's.
  const std::vector<kvm_cpuid_entry2> guest = {leaf(1, 0, 0, 0xff000000, (1u << 27) | (1u << 31), 0)};
  const std::vector<kvm_cpuid_entry2> host = {leaf(1, 0, 0, 0, 0, 0)};
  EXPECT_EQ(missing_cpu_features(guest, host), Names{});
  // A leaf the host does not have at all lacks every bit the guest saw in it.
  EXPECT_EQ(missing_cpu_features({leaf(0x80000001, 0, 0, 0, 0, 1u << 20)}, {}), Names{"nx"});
}

}  // namespace
}  // namespace kdom::x86
