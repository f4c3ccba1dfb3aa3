// KVM vCPU ioctls.
#include "kvm/vcpu.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <memory>

#include "base/error.h"
#include "kvm/abi.h"

namespace kdom::kvm {

Vcpu::Vcpu(const KvmSystem& system, const Vm& vm, uint32_t id) : id_(id) {
  int fd = ::ioctl(vm.fd(), KVM_CREATE_VCPU, id);
  if (fd < 0) throw SystemError("KVM_CREATE_VCPU " + std::to_string(id), errno);
  fd_.reset(fd);
  run_mapping_ = Mapping::of_fd(fd, static_cast<size_t>(system.vcpu_mmap_size()), PROT_READ | PROT_WRITE,
                                MAP_SHARED);
}

bool Vcpu::run() {
  if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return true;
  if (errno == EINTR || errno == EAGAIN) return false;
  throw SystemError("KVM_RUN on vCPU " + std::to_string(id_), errno);
}

kvm_regs Vcpu::regs() const {
  kvm_regs regs{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_REGS, &regs), "KVM_GET_REGS");
  return regs;
}

void Vcpu::set_regs(const kvm_regs& regs) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_REGS, &regs), "KVM_SET_REGS");
}

kvm_sregs Vcpu::sregs() const {
  kvm_sregs sregs{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_SREGS, &sregs), "KVM_GET_SREGS");
  return sregs;
}

void Vcpu::set_sregs(const kvm_sregs& sregs) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_SREGS, &sregs), "KVM_SET_SREGS");
}

void Vcpu::set_fpu(const kvm_fpu& fpu) { check_syscall(::ioctl(fd_.get(), KVM_SET_FPU, &fpu), "KVM_SET_FPU"); }

void Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  size_t bytes = sizeof(abi::ListHeader) + entries.size() * sizeof(kvm_cpuid_entry2);
  auto buffer = std::make_unique<uint8_t[]>(bytes);
  auto* header = reinterpret_cast<abi::ListHeader*>(buffer.get());
  header->count = static_cast<uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), reinterpret_cast<kvm_cpuid_entry2*>(header + 1));
  check_syscall(::ioctl(fd_.get(), abi::kSetCpuid2, header), "KVM_SET_CPUID2");
}

void Vcpu::set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
  size_t bytes = sizeof(abi::ListHeader) + msrs.size() * sizeof(kvm_msr_entry);
  auto buffer = std::make_unique<uint8_t[]>(bytes);
  auto* header = reinterpret_cast<abi::ListHeader*>(buffer.get());
  header->count = static_cast<uint32_t>(msrs.size());
  auto* entries = reinterpret_cast<kvm_msr_entry*>(header + 1);
  for (size_t i = 0; i < msrs.size(); ++i) {
    entries[i] = kvm_msr_entry{};
    entries[i].index = msrs[i].first;
    entries[i].data = msrs[i].second;
  }
  int written = check_syscall(::ioctl(fd_.get(), abi::kSetMsrs, header), "KVM_SET_MSRS");
  if (static_cast<size_t>(written) != msrs.size())
    throw Error("KVM_SET_MSRS: KVM refused MSR " + std::to_string(msrs[static_cast<size_t>(written)].first));
}

kvm_lapic_state Vcpu::lapic() const {
  kvm_lapic_state state{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_LAPIC, &state), "KVM_GET_LAPIC");
  return state;
}

void Vcpu::set_lapic(const kvm_lapic_state& state) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_LAPIC, &state), "KVM_SET_LAPIC");
}

kvm_vcpu_events Vcpu::events() const {
  kvm_vcpu_events events{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &events), "KVM_GET_VCPU_EVENTS");
  return events;
}

kvm_mp_state Vcpu::mp_state() const {
  kvm_mp_state state{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_MP_STATE, &state), "KVM_GET_MP_STATE");
  return state;
}

void Vcpu::set_mp_state(const kvm_mp_state& state) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_MP_STATE, &state), "KVM_SET_MP_STATE");
}

void Vcpu::set_events(const kvm_vcpu_events& events) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_VCPU_EVENTS, &events), "KVM_SET_VCPU_EVENTS");
}

std::vector<uint8_t> Vcpu::xsave(size_t bytes) const {
  std::vector<uint8_t> area(std::max(bytes, abi::kXsaveLegacyBytes));
  if (area.size() > abi::kXsaveLegacyBytes)
    check_syscall(::ioctl(fd_.get(), abi::kGetXsave2, area.data()), "KVM_GET_XSAVE2");
  else
    check_syscall(::ioctl(fd_.get(), abi::kGetXsave, area.data()), "KVM_GET_XSAVE");
  return area;
}

void Vcpu::set_xsave(const std::vector<uint8_t>& area) {
  if (area.size() < abi::kXsaveLegacyBytes) throw Error("KVM_SET_XSAVE: an XSAVE area under 4096 bytes");
  check_syscall(::ioctl(fd_.get(), abi::kSetXsave, area.data()), "KVM_SET_XSAVE");
}

kvm_xcrs Vcpu::xcrs() const {
  kvm_xcrs xcrs{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_XCRS, &xcrs), "KVM_GET_XCRS");
  return xcrs;
}

void Vcpu::set_xcrs(const kvm_xcrs& xcrs) { check_syscall(::ioctl(fd_.get(), KVM_SET_XCRS, &xcrs), "KVM_SET_XCRS"); }

kvm_debugregs Vcpu::debugregs() const {
  kvm_debugregs regs{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_DEBUGREGS, &regs), "KVM_GET_DEBUGREGS");
  return regs;
}

void Vcpu::set_debugregs(const kvm_debugregs& regs) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_DEBUGREGS, &regs), "KVM_SET_DEBUGREGS");
}

std::vector<std::pair<uint32_t, uint64_t>> Vcpu::msrs(const std::vector<uint32_t>& indices) const {
  std::vector<std::pair<uint32_t, uint64_t>> values;
  size_t next = 0;
  while (next < indices.size()) {
    const size_t count = indices.size() - next;
    std::vector<uint8_t> buffer(sizeof(abi::ListHeader) + count * sizeof(kvm_msr_entry));
    auto* header = reinterpret_cast<abi::ListHeader*>(buffer.data());
    header->count = static_cast<uint32_t>(count);
    auto* entries = reinterpret_cast<kvm_msr_entry*>(header + 1);
    for (size_t i = 0; i < count; ++i) entries[i].index = indices[next + i];
    // KVM reads entries in order and stops at the first it refuses: keep those before it, skip it.
    const int read = check_syscall(::ioctl(fd_.get(), abi::kGetMsrs, header), "KVM_GET_MSRS");
    for (int i = 0; i < read; ++i) values.emplace_back(entries[i].index, entries[i].data);
    next += static_cast<size_t>(read) + 1;
  }
  return values;
}

uint32_t Vcpu::tsc_khz() const {
  return static_cast<uint32_t>(check_syscall(::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0), "KVM_GET_TSC_KHZ"));
}

void Vcpu::set_tsc_khz(uint32_t khz) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)), "KVM_SET_TSC_KHZ");
}

}  // namespace kdom::kvm
