// Tests of the host-facts record: the guest's CPUID table survives JSON both ways, a malformed
// table is refused, and the CPU check names what this host lacks.
#include "snapshot/host_facts.h"

#include <gtest/gtest.h>

#include "snapshot/stream.h"

namespace kdom::snapshot {
namespace {

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index, uint32_t flags, uint32_t ebx, uint32_t ecx) {
  kvm_cpuid_entry2 entry{};
  entry.function = function;
  entry.index = index;
  entry.flags = flags;
  entry.eax = 0x12345678;
  entry.ebx = ebx;
  entry.ecx = ecx;
  entry.edx = 0;
  return entry;
}

TEST(SnapshotHostFacts, TheGuestCpuidRoundTripsWithTheFacts) {
  const std::vector<kvm_cpuid_entry2> table = {leaf(1, 0, 0, 0, 1u << 28),
                                               leaf(7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 1u << 16, 0)};
  const nlohmann::json facts = nlohmann::json::parse(host_facts("0.1.0", table).dump());
  EXPECT_EQ(facts["kdom_version"], "0.1.0");
  EXPECT_FALSE(facts["cpu"].get<std::string>().empty());
  EXPECT_GT(facts["saved_at_unix_ms"].get<int64_t>(), 0);
  const auto back = guest_cpuid_of(facts);
  ASSERT_EQ(back.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back[i].function, table[i].function);
    EXPECT_EQ(back[i].flags, table[i].flags);
    EXPECT_EQ(back[i].eax, table[i].eax);
    EXPECT_EQ(back[i].ebx, table[i].ebx);
    EXPECT_EQ(back[i].ecx, table[i].ecx);
    EXPECT_EQ(back[i].edx, table[i].edx);
  }
  EXPECT_NO_THROW(check_cpu_model(facts, table));
}

TEST(SnapshotHostFacts, TheCheckNamesWhatThisHostLacks) {
  const std::vector<kvm_cpuid_entry2> saved = {leaf(1, 0, 0, 0, 1u << 28),
                                               leaf(7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 1u << 16, 0)};
  nlohmann::json facts = host_facts("0.1.0", saved);
  facts["cpu"] = "Big CPU";
  try {
    check_cpu_model(facts, {leaf(1, 0, 0, 0, 0)});
    FAIL() << "a host without avx was taken";
  } catch (const StreamError& error) {
    EXPECT_STREQ(error.what(), "the saved guest uses CPU features this host lacks: avx, avx512f (saved on Big CPU)");
  }
}

TEST(SnapshotHostFacts, AMalformedTableIsRefused) {
  const nlohmann::json bad[] = {
      nullptr,
      nlohmann::json::object(),
      {{"guest_cpuid", "none"}},
      {{"guest_cpuid", {1}}},
      {{"guest_cpuid", {{{"function", 1}}}}},
      {{"guest_cpuid",
        {{{"function", 1}, {"index", 0}, {"flags", 0}, {"eax", -1}, {"ebx", 0}, {"ecx", 0}, {"edx", 0}}}}},
      {{"guest_cpuid",
        {{{"function", 1}, {"index", 0}, {"flags", 0}, {"eax", uint64_t{1} << 32}, {"ebx", 0}, {"ecx", 0}, {"edx", 0}}}}},
      {{"guest_cpuid", nlohmann::json::array({1, 2, 3})}},
  };
  for (const auto& facts : bad) EXPECT_THROW(guest_cpuid_of(facts), StreamError) << facts.dump();
  nlohmann::json many = {{"guest_cpuid", nlohmann::json::array()}};
  for (int i = 0; i < 257; ++i)
    many["guest_cpuid"].push_back({{"function", 1}, {"index", 0}, {"flags", 0}, {"eax", 0}, {"ebx", 0}, {"ecx", 0}, {"edx", 0}});
  EXPECT_THROW(guest_cpuid_of(many), StreamError);
}

}  // namespace
}  // namespace kdom::snapshot
