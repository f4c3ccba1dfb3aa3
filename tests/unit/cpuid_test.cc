// Tests of vcpu_cpuid: per-vCPU APIC ids (leaf 1, 0xB, 0x1F, 0x8000001E), the hypervisor bit,
// and the KVM signature leaf (added when KVM's list lacks it, corrected when present).
#include "arch/x86/cpuid.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace kdom::x86 {
namespace {

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index = 0, uint32_t eax = 0, uint32_t ebx = 0, uint32_t ecx = 0,
                      uint32_t edx = 0) {
  kvm_cpuid_entry2 entry{};
  entry.function = function;
  entry.index = index;
  entry.eax = eax;
  entry.ebx = ebx;
  entry.ecx = ecx;
  entry.edx = edx;
  return entry;
}

std::vector<kvm_cpuid_entry2> fake_supported() {
  return {
      leaf(0x0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69),  // GenuineIntel
      leaf(0x1, 0, 0x000906ea, 0xab000800, 0x7ffafbff, 0xbfebfbff),
      leaf(0xb, 0, 1, 1, 0x100, 0xee),
      leaf(0xb, 1, 4, 4, 0x201, 0xee),
      leaf(0x1f, 0, 1, 1, 0x100, 0xee),
      leaf(0x80000000, 0, 0x80000008),
      leaf(0x8000001e, 0, 0xee),
  };
}

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& entries, uint32_t function, uint32_t index = 0) {
  auto it = std::find_if(entries.begin(), entries.end(),
                         [&](const auto& e) { return e.function == function && e.index == index; });
  return it == entries.end() ? nullptr : &*it;
}

std::string signature(const kvm_cpuid_entry2& entry) {
  char text[12];
  std::memcpy(text, &entry.ebx, 4);
  std::memcpy(text + 4, &entry.ecx, 4);
  std::memcpy(text + 8, &entry.edx, 4);
  return std::string(text, 12);
}

TEST(Cpuid, Leaf1CarriesTheApicIdAndCount) {
  auto entries = vcpu_cpuid(fake_supported(), 3, 4);
  const auto* l1 = find(entries, 1);
  ASSERT_NE(l1, nullptr);
  EXPECT_EQ(l1->ebx >> 24, 3u);
  EXPECT_EQ((l1->ebx >> 16) & 0xff, 4u);
  EXPECT_EQ(l1->ebx & 0xffff, 0x0800u);  // CLFLUSH size and brand index kept
  EXPECT_TRUE(l1->edx & (1u << 28));     // HTT: more than one logical processor
  EXPECT_EQ(l1->eax, 0x000906eau);
}

TEST(Cpuid, HypervisorBitIsSet) {
  auto supported = fake_supported();
  supported[1].ecx &= ~(1u << 31);
  auto entries = vcpu_cpuid(supported, 0, 1);
  EXPECT_TRUE(find(entries, 1)->ecx & (1u << 31));
  EXPECT_EQ(find(entries, 1)->ecx & ~(1u << 31), supported[1].ecx);
}

TEST(Cpuid, SingleVcpuHasNoHyperThreadingBit) {
  auto entries = vcpu_cpuid(fake_supported(), 0, 1);
  EXPECT_FALSE(find(entries, 1)->edx & (1u << 28));
  EXPECT_EQ(find(entries, 1)->ebx >> 24, 0u);
}

TEST(Cpuid, TopologyLeavesCarryTheX2ApicId) {
  auto entries = vcpu_cpuid(fake_supported(), 5, 8);
  EXPECT_EQ(find(entries, 0xb, 0)->edx, 5u);
  EXPECT_EQ(find(entries, 0xb, 1)->edx, 5u);
  EXPECT_EQ(find(entries, 0x1f, 0)->edx, 5u);
  EXPECT_EQ(find(entries, 0x8000001e)->eax, 5u);
  // The other registers of those leaves are KVM's.
  EXPECT_EQ(find(entries, 0xb, 1)->ecx, 0x201u);
}

TEST(Cpuid, OtherLeavesAreUnchanged) {
  auto supported = fake_supported();
  auto entries = vcpu_cpuid(supported, 2, 4);
  const auto* l0 = find(entries, 0);
  EXPECT_EQ(l0->ebx, supported[0].ebx);
  EXPECT_EQ(l0->ecx, supported[0].ecx);
  EXPECT_EQ(l0->edx, supported[0].edx);
  EXPECT_EQ(find(entries, 0x80000000)->eax, 0x80000008u);
}

TEST(Cpuid, KvmSignatureIsAddedWhenMissing) {
  auto supported = fake_supported();
  auto entries = vcpu_cpuid(supported, 0, 1);
  EXPECT_EQ(entries.size(), supported.size() + 1);
  const auto* sig = find(entries, 0x40000000);
  ASSERT_NE(sig, nullptr);
  EXPECT_EQ(signature(*sig), std::string("KVMKVMKVM\0\0\0", 12));
  EXPECT_GE(sig->eax, 0x40000001u);
}

TEST(Cpuid, KvmSignatureIsKeptAndCorrectedWhenPresent) {
  auto supported = fake_supported();
  supported.push_back(leaf(0x40000000, 0, 0x40000000, 0x11111111, 0x22222222, 0x33333333));
  supported.push_back(leaf(0x40000001, 0, 0x01007afb));
  auto entries = vcpu_cpuid(supported, 0, 1);
  EXPECT_EQ(entries.size(), supported.size());  // nothing added
  EXPECT_EQ(std::count_if(entries.begin(), entries.end(), [](const auto& e) { return e.function == 0x40000000; }), 1);
  const auto* sig = find(entries, 0x40000000);
  EXPECT_EQ(signature(*sig), std::string("KVMKVMKVM\0\0\0", 12));
  EXPECT_EQ(sig->eax, 0x40000001u);
  EXPECT_EQ(find(entries, 0x40000001)->eax, 0x01007afbu);  // KVM features untouched
}

TEST(Cpuid, KvmSignatureKeepsAHigherMaximumLeaf) {
  auto supported = fake_supported();
  supported.push_back(leaf(0x40000000, 0, 0x40000010, 0x4b4d564b, 0x564b4d56, 0x4d));
  auto entries = vcpu_cpuid(supported, 0, 1);
  EXPECT_EQ(find(entries, 0x40000000)->eax, 0x40000010u);
}

TEST(Cpuid, InputIsNotModified) {
  auto supported = fake_supported();
  auto before = supported;
  vcpu_cpuid(supported, 7, 8);
  ASSERT_EQ(supported.size(), before.size());
  for (size_t i = 0; i < supported.size(); ++i) EXPECT_EQ(std::memcmp(&supported[i], &before[i], sizeof(supported[i])), 0);
}

}  // namespace
}  // namespace kdom::x86
