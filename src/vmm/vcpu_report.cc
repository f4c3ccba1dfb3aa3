// vCPU failure reports.
#include "vmm/vcpu_report.h"

#include <cstdio>

namespace kdom::vmm {

namespace {
std::string format(const char* pattern, auto... values) {
  char line[256];
  std::snprintf(line, sizeof(line), pattern, values...);
  return line;
}

std::string segment(const char* name, const kvm_segment& s) {
  return format("%s=%04x base=%llx limit=%x type=%x dpl=%u l=%u db=%u", name, s.selector,
                static_cast<unsigned long long>(s.base), s.limit, s.type, s.dpl, s.l, s.db);
}
}  // namespace

std::vector<std::string> describe_registers(const kvm_regs& r, const kvm_sregs& s) {
  using ull = unsigned long long;
  return {
      format("rip=%016llx rsp=%016llx rflags=%016llx", ull{r.rip}, ull{r.rsp}, ull{r.rflags}),
      format("rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx", ull{r.rax}, ull{r.rbx}, ull{r.rcx}, ull{r.rdx}),
      format("rsi=%016llx rdi=%016llx rbp=%016llx", ull{r.rsi}, ull{r.rdi}, ull{r.rbp}),
      format("r8=%016llx r9=%016llx r10=%016llx r11=%016llx", ull{r.r8}, ull{r.r9}, ull{r.r10}, ull{r.r11}),
      format("r12=%016llx r13=%016llx r14=%016llx r15=%016llx", ull{r.r12}, ull{r.r13}, ull{r.r14}, ull{r.r15}),
      format("cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%016llx", ull{s.cr0}, ull{s.cr2}, ull{s.cr3},
             ull{s.cr4}, ull{s.efer}),
      segment("cs", s.cs) + " " + segment("ss", s.ss),
      format("gdt=%llx/%x idt=%llx/%x", ull{s.gdt.base}, s.gdt.limit, ull{s.idt.base}, s.idt.limit),
  };
}

std::string describe_events(const kvm_vcpu_events& e) {
  // KVM leaves the last vector in nr when nothing is in flight: name it only when it is.
  std::string exception = "none";
  if (e.exception.injected || e.exception.pending)
    exception = format("%u (%s) error_code=%s", e.exception.nr, e.exception.injected ? "injected" : "pending",
                       e.exception.has_error_code ? format("%#x", e.exception.error_code).c_str() : "none");
  const std::string interrupt = e.interrupt.injected ? format("%u (injected)", e.interrupt.nr) : "none";
  return format("events: exception %s, interrupt %s, shadow=%u, nmi injected=%u pending=%u masked=%u",
                exception.c_str(), interrupt.c_str(), e.interrupt.shadow, e.nmi.injected, e.nmi.pending,
                e.nmi.masked);
}

bool registers_are_reset_state(const kvm_regs& regs, const kvm_sregs& sregs) {
  return regs.rip == 0xfff0 && sregs.cs.selector == 0xf000 && sregs.cs.base == 0xffff0000 && (sregs.cr0 & 1) == 0;
}

std::string describe_failed_exit(const kvm_run& run) {
  switch (run.exit_reason) {
    case KVM_EXIT_SHUTDOWN:
      return "triple fault (KVM_EXIT_SHUTDOWN)";
    case KVM_EXIT_INTERNAL_ERROR: {
      std::string what = run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                             ? "instruction emulation failed"
                             : "suberror " + std::to_string(run.internal.suberror);
      return "KVM internal error (KVM_EXIT_INTERNAL_ERROR): " + what;
    }
    case KVM_EXIT_FAIL_ENTRY:
      return format("VM entry failed (KVM_EXIT_FAIL_ENTRY), hardware reason 0x%llx",
                    static_cast<unsigned long long>(run.fail_entry.hardware_entry_failure_reason));
    default:
      return "unexpected KVM exit reason " + std::to_string(run.exit_reason);
  }
}

}  // namespace kdom::vmm
