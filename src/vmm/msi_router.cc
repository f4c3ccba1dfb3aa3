// MSI routing through KVM GSI routes and irqfds.
#include "vmm/msi_router.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "arch/x86/irq_routes.h"
#include "base/error.h"
#include "base/eventfd.h"

namespace kdom::vmm {

void MsiRouter::Vector::fire() const {
  signal_eventfd(eventfd_.get());
}

MsiRouter::MsiRouter(kvm::Vm& vm, std::vector<kvm_irq_routing_entry> base_routes, uint32_t first_gsi)
    : vm_(vm), base_routes_(std::move(base_routes)), next_gsi_(first_gsi) {}

MsiRouter::~MsiRouter() {
  for (const auto& weak : vectors_)
    if (auto vector = weak.lock()) vm_.unregister_irqfd(vector->eventfd_.get(), vector->gsi_);
}

std::shared_ptr<MsiRouter::Vector> MsiRouter::allocate() {
  std::lock_guard lock(mutex_);
  UniqueFd eventfd(check_syscall(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
  uint32_t gsi = next_gsi_;
  if (free_gsis_.empty()) {
    ++next_gsi_;
  } else {
    gsi = free_gsis_.back();
    free_gsis_.pop_back();
  }
  auto vector = std::shared_ptr<Vector>(new Vector(gsi, std::move(eventfd)));
  // KVM only accepts an irqfd for a GSI that has a route: start with a message to nowhere.
  msi_routes_[vector->gsi_] = x86::msi_route(vector->gsi_, 0, 0);
  install();
  if (holding_)
    held_irqfds_.push_back(vector);
  else
    register_irqfd(vector);
  return vector;
}

void MsiRouter::register_irqfd(const std::shared_ptr<Vector>& vector) {
  vm_.register_irqfd(vector->eventfd_.get(), vector->gsi_);
  vectors_.push_back(vector);
}

void MsiRouter::hold() {
  std::lock_guard lock(mutex_);
  holding_ = true;
}

void MsiRouter::install_held() {
  std::lock_guard lock(mutex_);
  holding_ = false;
  if (held_changes_) install();
  held_changes_ = false;
  auto irqfds = std::move(held_irqfds_);
  held_irqfds_.clear();
  for (const auto& weak : irqfds)
    if (auto vector = weak.lock()) register_irqfd(vector);
}

void MsiRouter::set_message(const Vector& vector, uint64_t address, uint32_t data) {
  std::lock_guard lock(mutex_);
  msi_routes_[vector.gsi_] = x86::msi_route(vector.gsi_, address, data);
  install();
}

void MsiRouter::release(const Vector& vector) {
  std::lock_guard lock(mutex_);
  if (msi_routes_.erase(vector.gsi_) == 0) return;
  vm_.unregister_irqfd(vector.eventfd_.get(), vector.gsi_);
  const auto this_one = [&](const std::weak_ptr<Vector>& weak) {
    auto live = weak.lock();
    return !live || live.get() == &vector;
  };
  std::erase_if(vectors_, this_one);
  std::erase_if(held_irqfds_, this_one);
  install();
  free_gsis_.push_back(vector.gsi_);
}

void MsiRouter::install() {
  if (holding_) {
    held_changes_ = true;
    return;
  }
  std::vector<kvm_irq_routing_entry> routes = base_routes_;
  for (const auto& [gsi, route] : msi_routes_) routes.push_back(route);
  vm_.set_gsi_routing(routes);
}

}  // namespace kdom::vmm
