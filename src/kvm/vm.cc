// KVM VM ioctls.
#include "kvm/vm.h"

#include <sys/ioctl.h>

#include <memory>
#include <string>

#include "base/error.h"
#include "kvm/abi.h"

namespace kdom::kvm {

Vm::Vm(const KvmSystem& system) {
  int fd = ::ioctl(system.fd(), KVM_CREATE_VM, 0);
  if (fd < 0) throw SystemError("KVM_CREATE_VM", errno);
  fd_.reset(fd);
}

void Vm::set_memory_region(uint32_t slot, uint64_t guest_phys_addr, uint64_t size, void* host_addr,
                           uint32_t flags) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = guest_phys_addr;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host_addr);
  check_syscall(::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region), "KVM_SET_USER_MEMORY_REGION");
}

std::vector<uint64_t> Vm::dirty_log(uint32_t slot, uint64_t pages) const {
  // KVM fills whole longs of its bitmap: 64 pages a word on x86-64.
  std::vector<uint64_t> bitmap((pages + 63) / 64);
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  check_syscall(::ioctl(fd_.get(), KVM_GET_DIRTY_LOG, &log), "KVM_GET_DIRTY_LOG (slot " + std::to_string(slot) + ")");
  return bitmap;
}

bool Vm::enable_dirty_ring(uint32_t entries) {
  const uint64_t bytes = uint64_t{entries} * sizeof(kvm_dirty_gfn);
  // Both say the largest ring in bytes; the ACQ_REL one also promises KVM orders its side with
  // acquire and release, which DirtyRing's harvest pairs with (x86 offers both).
  for (int capability : {KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING}) {
    const int max_bytes = check_extension(capability);
    if (max_bytes <= 0 || bytes > static_cast<uint64_t>(max_bytes)) continue;
    kvm_enable_cap enable{};
    enable.cap = static_cast<uint32_t>(capability);
    enable.args[0] = bytes;
    check_syscall(::ioctl(fd_.get(), KVM_ENABLE_CAP, &enable),
                  "KVM_ENABLE_CAP dirty ring of " + std::to_string(entries) + " entries");
    return true;
  }
  return false;
}

uint64_t Vm::reset_dirty_rings() {
  return static_cast<uint64_t>(check_syscall(::ioctl(fd_.get(), KVM_RESET_DIRTY_RINGS, 0), "KVM_RESET_DIRTY_RINGS"));
}

void Vm::set_tss_address(uint64_t address) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_TSS_ADDR, address), "KVM_SET_TSS_ADDR");
}

void Vm::set_identity_map_address(uint64_t address) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &address), "KVM_SET_IDENTITY_MAP_ADDR");
}

void Vm::create_irqchip() { check_syscall(::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP"); }

void Vm::create_pit() {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  check_syscall(::ioctl(fd_.get(), KVM_CREATE_PIT2, &config), "KVM_CREATE_PIT2");
}

void Vm::set_irq_line(uint32_t irq, bool level) {
  kvm_irq_level line{};
  line.irq = irq;
  line.level = level ? 1 : 0;
  check_syscall(::ioctl(fd_.get(), KVM_IRQ_LINE, &line), "KVM_IRQ_LINE");
}

void Vm::register_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  check_syscall(::ioctl(fd_.get(), KVM_IRQFD, &irqfd), "KVM_IRQFD");
}

void Vm::unregister_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  ::ioctl(fd_.get(), KVM_IRQFD, &irqfd);
}

namespace {
kvm_ioeventfd ioeventfd_request(int eventfd, uint64_t address, uint32_t length, bool port_io,
                                std::optional<uint64_t> value) {
  kvm_ioeventfd request{};
  request.addr = address;
  request.len = length;
  request.fd = eventfd;
  if (port_io) request.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (value) {
    request.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    request.datamatch = *value;
  }
  return request;
}
}  // namespace

void Vm::set_gsi_routing(const std::vector<kvm_irq_routing_entry>& routes) {
  size_t bytes = sizeof(abi::ListHeader) + routes.size() * sizeof(kvm_irq_routing_entry);
  auto buffer = std::make_unique<uint8_t[]>(bytes);
  auto* header = reinterpret_cast<abi::ListHeader*>(buffer.get());
  header->count = static_cast<uint32_t>(routes.size());
  std::copy(routes.begin(), routes.end(), reinterpret_cast<kvm_irq_routing_entry*>(header + 1));
  check_syscall(::ioctl(fd_.get(), abi::kSetGsiRouting, header), "KVM_SET_GSI_ROUTING");
}

void Vm::register_ioeventfd(int eventfd, uint64_t address, uint32_t length, bool port_io,
                            std::optional<uint64_t> value) {
  kvm_ioeventfd request = ioeventfd_request(eventfd, address, length, port_io, value);
  check_syscall(::ioctl(fd_.get(), KVM_IOEVENTFD, &request), "KVM_IOEVENTFD");
}

void Vm::unregister_ioeventfd(int eventfd, uint64_t address, uint32_t length, bool port_io,
                              std::optional<uint64_t> value) {
  kvm_ioeventfd request = ioeventfd_request(eventfd, address, length, port_io, value);
  request.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  ::ioctl(fd_.get(), KVM_IOEVENTFD, &request);
}

kvm_irqchip Vm::irqchip(uint32_t chip_id) const {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  check_syscall(::ioctl(fd_.get(), KVM_GET_IRQCHIP, &chip), "KVM_GET_IRQCHIP");
  return chip;
}

void Vm::set_irqchip(const kvm_irqchip& chip) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_IRQCHIP, &chip), "KVM_SET_IRQCHIP");
}

kvm_pit_state2 Vm::pit() const {
  kvm_pit_state2 state{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_PIT2, &state), "KVM_GET_PIT2");
  return state;
}

void Vm::set_pit(const kvm_pit_state2& state) {
  check_syscall(::ioctl(fd_.get(), KVM_SET_PIT2, &state), "KVM_SET_PIT2");
}

uint64_t Vm::clock() const {
  kvm_clock_data data{};
  check_syscall(::ioctl(fd_.get(), KVM_GET_CLOCK, &data), "KVM_GET_CLOCK");
  return data.clock;
}

void Vm::set_clock(uint64_t nanoseconds) {
  kvm_clock_data data{};
  data.clock = nanoseconds;
  check_syscall(::ioctl(fd_.get(), KVM_SET_CLOCK, &data), "KVM_SET_CLOCK");
}

int Vm::check_extension(int capability) const { return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability); }

}  // namespace kdom::kvm
