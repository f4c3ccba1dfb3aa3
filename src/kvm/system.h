// KvmSystem: the /dev/kvm handle: API version check, capabilities, supported CPUID.
#pragma once

#include <linux/kvm.h>

#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace kdom::kvm {

class KvmSystem {
 public:
  // Opens the KVM device; throws Error with a one-line explanation when it is missing,
  // not accessible, or speaks another API version.
  explicit KvmSystem(const std::string& device_path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  int check_extension(int capability) const;
  int vcpu_mmap_size() const;
  // Highest number of vCPUs one VM may have.
  int max_vcpus() const;
  std::vector<kvm_cpuid_entry2> supported_cpuid() const;
  // The MSRs KVM says a VMM should save and restore (KVM_GET_MSR_INDEX_LIST).
  std::vector<uint32_t> msr_index_list() const;

 private:
  UniqueFd fd_;
};

}  // namespace kdom::kvm
