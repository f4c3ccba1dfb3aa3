// Tests of the KVM wiring virtio devices rely on, against this host's real /dev/kvm: GSI
// routing with MSI routes, irqfd, and ioeventfd (a guest port write signals an eventfd inside
// KVM, with no exit to the VMM). Needs /dev/kvm (ctest label "guests").
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "arch/x86/irq_routes.h"
#include "base/error.h"
#include "base/mapping.h"
#include "base/unique_fd.h"
#include "kvm/system.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "vmm/msi_router.h"

namespace kdom::kvm {
namespace {

constexpr uint16_t kDoorbellPort = 0x1234;
constexpr uint16_t kDonePort = 0xf4;

uint64_t eventfd_count(int fd) {
  uint64_t value = 0;
  return ::read(fd, &value, sizeof(value)) == sizeof(value) ? value : 0;
}

struct Machine {
  KvmSystem system;
  Vm vm{system};
  Mapping memory = Mapping::anonymous(0x10000);
  Machine() {
    vm.set_tss_address(0xfffbd000);
    vm.create_irqchip();
    vm.set_memory_region(0, 0, memory.size(), memory.data());
  }
};

TEST(KvmWiring, GsiRoutingAcceptsIrqchipAndMsiRoutes) {
  Machine machine;
  auto routes = x86::default_irqchip_routes();
  routes.push_back(x86::msi_route(x86::kFirstMsiGsi, 0xfee00000, 0x4030));
  EXPECT_NO_THROW(machine.vm.set_gsi_routing(routes));
  UniqueFd irq(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(irq.valid());
  EXPECT_NO_THROW(machine.vm.register_irqfd(irq.get(), x86::kFirstMsiGsi));
  machine.vm.unregister_irqfd(irq.get(), x86::kFirstMsiGsi);
}

TEST(KvmWiring, GsiRoutingRejectsAnUnknownIrqchip) {
  Machine machine;
  auto routes = x86::default_irqchip_routes();
  routes[0].u.irqchip.irqchip = 7;
  EXPECT_THROW(machine.vm.set_gsi_routing(routes), Error);
}

TEST(KvmWiring, IoeventfdCatchesAGuestPortWriteWithoutAnExit) {
  Machine machine;
  UniqueFd doorbell(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(doorbell.valid());
  machine.vm.register_ioeventfd(doorbell.get(), kDoorbellPort, 2, /*port_io=*/true);

  // Real mode at 0x1000: out kDoorbellPort, ax (twice); mov al, 0x55; out kDonePort, al; hlt
  const uint8_t code[] = {0xba, 0x34, 0x12, 0xef, 0xef, 0xb0, 0x55, 0xe6, kDonePort, 0xf4};
  std::memcpy(machine.memory.data() + 0x1000, code, sizeof(code));
  Vcpu vcpu(machine.system, machine.vm, 0);
  kvm_sregs sregs = vcpu.sregs();
  sregs.cs.selector = 0;
  sregs.cs.base = 0;
  vcpu.set_sregs(sregs);
  kvm_regs regs{};
  regs.rip = 0x1000;
  regs.rflags = 2;
  vcpu.set_regs(regs);

  int exits_at_doorbell = 0;
  bool done = false;
  for (int i = 0; i < 10 && !done; ++i) {
    ASSERT_TRUE(vcpu.run());
    const kvm_run* run = vcpu.run_state();
    ASSERT_EQ(run->exit_reason, static_cast<uint32_t>(KVM_EXIT_IO));
    if (run->io.port == kDoorbellPort) ++exits_at_doorbell;
    if (run->io.port == kDonePort) done = true;
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(exits_at_doorbell, 0);
  EXPECT_EQ(eventfd_count(doorbell.get()), 2u);
  machine.vm.unregister_ioeventfd(doorbell.get(), kDoorbellPort, 2, true);
}

void ignore_signal(int) {}

TEST(KvmWiring, MsiRouterDeliversAVectorToTheGuest) {
  Machine machine;
  vmm::MsiRouter router(machine.vm, x86::default_irqchip_routes(), x86::kFirstMsiGsi);
  auto vector = router.allocate();
  constexpr uint8_t kVector = 0x30;
  router.set_message(*vector, 0xfee00000, kVector);  // APIC id 0, fixed delivery, edge

  // Real mode. IVT[0x30] -> 0000:2000, which reports 0x77 on the done port.
  uint16_t ivt_entry[2] = {0x2000, 0};
  std::memcpy(machine.memory.data() + kVector * 4, ivt_entry, sizeof(ivt_entry));
  const uint8_t handler[] = {0xb0, 0x77, 0xe6, kDonePort, 0xf4};
  std::memcpy(machine.memory.data() + 0x2000, handler, sizeof(handler));
  const uint8_t main_code[] = {0xfb, 0xf4, 0xeb, 0xfd};  // sti; hlt; jmp hlt
  std::memcpy(machine.memory.data() + 0x1000, main_code, sizeof(main_code));

  Vcpu vcpu(machine.system, machine.vm, 0);
  kvm_lapic_state lapic = vcpu.lapic();
  uint32_t spurious = 0x1ff;  // software-enable the local APIC
  std::memcpy(lapic.regs + 0xf0, &spurious, 4);
  vcpu.set_lapic(lapic);
  kvm_sregs sregs = vcpu.sregs();
  sregs.cs.selector = 0;
  sregs.cs.base = 0;
  vcpu.set_sregs(sregs);
  kvm_regs regs{};
  regs.rip = 0x1000;
  regs.rflags = 2;
  regs.rsp = 0x8000;
  vcpu.set_regs(regs);

  struct sigaction action{};
  action.sa_handler = ignore_signal;
  sigaction(SIGUSR1, &action, nullptr);
  pthread_t self = pthread_self();
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 50 && !finished; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!finished) pthread_kill(self, SIGUSR1);
  });
  vector->fire();
  bool exited = vcpu.run();
  finished = true;
  watchdog.join();
  ASSERT_TRUE(exited) << "no MSI arrived within 5 s";
  const kvm_run* run = vcpu.run_state();
  ASSERT_EQ(run->exit_reason, static_cast<uint32_t>(KVM_EXIT_IO));
  EXPECT_EQ(run->io.port, kDonePort);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(run)[run->io.data_offset], 0x77);
}

}  // namespace
}  // namespace kdom::kvm
