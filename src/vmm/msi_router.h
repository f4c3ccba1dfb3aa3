// MsiRouter: delivers message-signalled interrupts (MSI-X vectors of PCI devices) through KVM:
// each vector gets a GSI with an MSI route and an irqfd, so firing it is one eventfd write
// from any thread, with no ioctl on the hot path.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/unique_fd.h"
#include "kvm/vm.h"

namespace kdom::vmm {

class MsiRouter {
 public:
  class Vector {
   public:
    // Delivers the interrupt (writes the irqfd).
    void fire() const;
    uint32_t gsi() const { return gsi_; }

   private:
    friend class MsiRouter;
    Vector(uint32_t gsi, UniqueFd eventfd) : gsi_(gsi), eventfd_(std::move(eventfd)) {}
    uint32_t gsi_;
    UniqueFd eventfd_;
  };

  // `base_routes` are kept in every table installed (the irqchip's own routes).
  MsiRouter(kvm::Vm& vm, std::vector<kvm_irq_routing_entry> base_routes, uint32_t first_gsi);
  ~MsiRouter();

  // A new vector, routed nowhere until set_message is called.
  std::shared_ptr<Vector> allocate();
  // Points the vector at the MSI message the guest programmed (address and data).
  void set_message(const Vector& vector, uint64_t address, uint32_t data);
  // The vector's device left (hot-unplug): its route and irqfd go and its GSI may be handed
  // out again. Firing it afterwards reaches nothing.
  void release(const Vector& vector);

  // Between hold() and install_held(), route changes are gathered, and vectors allocated get
  // their irqfds only then: one routing table for KVM instead of one or two per vector, each of
  // which waits for KVM's readers (a restore routes every vector at once, in a migration's
  // pause). An irqfd fired meanwhile delivers once it is registered. Not nested.
  void hold();
  void install_held();

 private:
  void install();
  void register_irqfd(const std::shared_ptr<Vector>& vector);

  kvm::Vm& vm_;
  std::mutex mutex_;
  std::vector<kvm_irq_routing_entry> base_routes_;
  std::map<uint32_t, kvm_irq_routing_entry> msi_routes_;
  std::vector<std::weak_ptr<Vector>> vectors_;
  uint32_t next_gsi_;
  std::vector<uint32_t> free_gsis_;  // released, to be handed out before next_gsi_
  bool holding_ = false;              // hold(): nothing goes to KVM yet
  bool held_changes_ = false;         // ...and the table has changed since
  std::vector<std::weak_ptr<Vector>> held_irqfds_;
};

}  // namespace kdom::vmm
