// The host-facts record: what the saving host and kdom were, and the CPUID table the guest was
// shown (its CPU model), as JSON. A restoring host checks it first: another kdom format, or a
// CPU whose KVM lacks a feature the guest saw, is refused before anything is loaded, naming
// what is missing.
#pragma once

#include <linux/kvm.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kdom::snapshot {

// `kdom_version`: this kdom's; `guest_cpuid`: the table the domain's vCPU 0 was given.
nlohmann::json host_facts(const std::string& kdom_version, const std::vector<kvm_cpuid_entry2>& guest_cpuid);

// The guest's CPUID table from host facts; throws StreamError for a malformed one (the record
// is untrusted: at most 256 entries, each with numeric fields).
std::vector<kvm_cpuid_entry2> guest_cpuid_of(const nlohmann::json& facts);

// Throws StreamError naming the features the saved guest saw that `host_cpuid` (this host's
// KVM_GET_SUPPORTED_CPUID) lacks, e.g. "the saved guest uses CPU features this host lacks:
// avx512f, avx512bw (saved on CPU ...)".
void check_cpu_model(const nlohmann::json& facts, const std::vector<kvm_cpuid_entry2>& host_cpuid);

}  // namespace kdom::snapshot
