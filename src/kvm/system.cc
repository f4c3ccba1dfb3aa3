// /dev/kvm: opening it, its API version and what it supports.
#include "kvm/system.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <memory>

#include "base/error.h"
#include "kvm/abi.h"

namespace kdom::kvm {

KvmSystem::KvmSystem(const std::string& device_path) {
  int fd = ::open(device_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT)
      throw Error(device_path + " does not exist: this host has no KVM (load kvm-intel or kvm-amd)");
    if (err == EACCES || err == EPERM)
      throw Error("no permission to open " + device_path +
                  ": run as root or join the group that owns it (usually 'kvm')");
    throw SystemError("cannot open " + device_path, err);
  }
  fd_.reset(fd);
  int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    throw Error(device_path + " speaks KVM API version " + std::to_string(version) + ", kdom needs " +
                std::to_string(KVM_API_VERSION));
}

int KvmSystem::check_extension(int capability) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
  return r < 0 ? 0 : r;
}

int KvmSystem::vcpu_mmap_size() const {
  return check_syscall(::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0), "KVM_GET_VCPU_MMAP_SIZE");
}

int KvmSystem::max_vcpus() const {
  int max = check_extension(KVM_CAP_MAX_VCPUS);
  if (max > 0) return max;
  int recommended = check_extension(KVM_CAP_NR_VCPUS);
  return recommended > 0 ? recommended : 4;
}

std::vector<kvm_cpuid_entry2> KvmSystem::supported_cpuid() const {
  for (size_t capacity = 128; capacity <= 4096; capacity *= 2) {
    size_t bytes = sizeof(abi::ListHeader) + capacity * sizeof(kvm_cpuid_entry2);
    auto buffer = std::make_unique<uint8_t[]>(bytes);
    auto* header = reinterpret_cast<abi::ListHeader*>(buffer.get());
    header->count = static_cast<uint32_t>(capacity);
    if (::ioctl(fd_.get(), abi::kGetSupportedCpuid, header) == 0) {
      auto* entries = reinterpret_cast<kvm_cpuid_entry2*>(header + 1);
      return std::vector<kvm_cpuid_entry2>(entries, entries + header->count);
    }
    if (errno != E2BIG) throw SystemError("KVM_GET_SUPPORTED_CPUID", errno);
  }
  throw Error("KVM_GET_SUPPORTED_CPUID: too many entries");
}

std::vector<uint32_t> KvmSystem::msr_index_list() const {
  // The first call, with room for none, fails with E2BIG and says how many there are.
  std::vector<uint32_t> buffer(1, 0);
  if (::ioctl(fd_.get(), abi::kGetMsrIndexList, buffer.data()) < 0 && errno != E2BIG)
    throw SystemError("KVM_GET_MSR_INDEX_LIST", errno);
  const uint32_t count = buffer[0];
  buffer.assign(1 + count, 0);
  buffer[0] = count;
  check_syscall(::ioctl(fd_.get(), abi::kGetMsrIndexList, buffer.data()), "KVM_GET_MSR_INDEX_LIST");
  return {buffer.begin() + 1, buffer.begin() + 1 + buffer[0]};
}

}  // namespace kdom::kvm
