// Vm: one KVM virtual machine: memory slots and their dirty logs, the in-kernel irqchip and
// PIT, interrupt lines and irqfds.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "base/unique_fd.h"
#include "kvm/system.h"

namespace kdom::kvm {

class Vm {
 public:
  explicit Vm(const KvmSystem& system);

  int fd() const { return fd_.get(); }
  // Registers (or, for a slot that exists, changes) a memory slot. Changing only `flags`
  // turns its dirty log on or off (KVM_MEM_LOG_DIRTY_PAGES).
  void set_memory_region(uint32_t slot, uint64_t guest_phys_addr, uint64_t size, void* host_addr,
                         uint32_t flags = 0);
  // The pages of `slot` (registered with KVM_MEM_LOG_DIRTY_PAGES, `pages` long) the guest
  // wrote since the last call, as bitmap words (bit i of word w: page 64 * w + i); KVM
  // clears its log and write-protects the pages again (KVM_GET_DIRTY_LOG).
  std::vector<uint64_t> dirty_log(uint32_t slot, uint64_t pages) const;
  // KVM's dirty ring instead of those bitmaps: `entries` struct kvm_dirty_gfn a vCPU (a power
  // of two; kvm::DirtyRing maps them), with KVM_CAP_DIRTY_LOG_RING_ACQ_REL where KVM offers it,
  // else KVM_CAP_DIRTY_LOG_RING. Only before any vCPU exists; from then on KVM refuses
  // dirty_log(). False, nothing changed, when KVM offers no ring of that size.
  bool enable_dirty_ring(uint32_t entries);
  // KVM_RESET_DIRTY_RINGS: every vCPU's harvested entries recycled and their pages
  // write-protected again, so that a write after this is logged anew. Returns how many.
  uint64_t reset_dirty_rings();
  void set_tss_address(uint64_t address);
  void set_identity_map_address(uint64_t address);
  // In-kernel PIC, IOAPIC and local APICs.
  void create_irqchip();
  // In-kernel i8254 PIT (with the speaker port 0x61).
  void create_pit();
  void set_irq_line(uint32_t irq, bool level);
  // For save and restore: the in-kernel PIC (chip 0: master, 1: slave) and IOAPIC (chip 2),
  // the PIT, and the KVM clock (kvmclock's time base, in ns).
  kvm_irqchip irqchip(uint32_t chip_id) const;
  void set_irqchip(const kvm_irqchip& chip);
  kvm_pit_state2 pit() const;
  void set_pit(const kvm_pit_state2& state);
  uint64_t clock() const;
  void set_clock(uint64_t nanoseconds);
  // A KVM_CHECK_EXTENSION on this VM (some answers, like KVM_CAP_XSAVE2's size, are per VM).
  int check_extension(int capability) const;
  // Routes writes to `eventfd` to an edge on GSI `gsi`.
  void register_irqfd(int eventfd, uint32_t gsi);
  void unregister_irqfd(int eventfd, uint32_t gsi);
  // Replaces the whole GSI routing table (so it must repeat the irqchip routes it keeps).
  void set_gsi_routing(const std::vector<kvm_irq_routing_entry>& routes);
  // Makes guest writes of `length` bytes to `address` (port I/O or MMIO) signal `eventfd`
  // inside KVM, without an exit to kdom; with `value`, only writes of that value.
  void register_ioeventfd(int eventfd, uint64_t address, uint32_t length, bool port_io,
                          std::optional<uint64_t> value = std::nullopt);
  void unregister_ioeventfd(int eventfd, uint64_t address, uint32_t length, bool port_io,
                            std::optional<uint64_t> value = std::nullopt);

 private:
  UniqueFd fd_;
};

}  // namespace kdom::kvm
