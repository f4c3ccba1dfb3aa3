// Split virtqueue (virtio 1.x, spec 2.7): chain parsing with every guest-controlled index,
// flag, address and length checked, the used ring, notification suppression, save/restore,
// and the marks in the VMM's dirty log of what the device wrote (live migration).
#include "devices/virtio/queue.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <sstream>

namespace kdom::devices::virtio {

namespace {

std::string hex(uint64_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}

constexpr uint64_t kAvailFlagsOffset = 0;
constexpr uint64_t kAvailIdxOffset = 2;
constexpr uint64_t kAvailRingOffset = 4;
constexpr uint64_t kUsedFlagsOffset = 0;
constexpr uint64_t kUsedIdxOffset = 2;
constexpr uint64_t kUsedRingOffset = 4;

}  // namespace

uint64_t DescriptorChain::readable_bytes() const {
  uint64_t total = 0;
  for (const auto& buffer : buffers)
    if (!buffer.device_writable) total += buffer.len;
  return total;
}

uint64_t DescriptorChain::writable_bytes() const {
  uint64_t total = 0;
  for (const auto& buffer : buffers)
    if (buffer.device_writable) total += buffer.len;
  return total;
}

Virtqueue::Virtqueue(const GuestMemory& memory, const VirtqueueConfig& config)
    : memory_(memory), config_(config) {}

void Virtqueue::validate() {
  const uint32_t size = config_.size;
  if (size == 0 || size > kVirtqMaxSize || !std::has_single_bit(size))
    fail_queue("virtqueue size " + std::to_string(size) + " is not a power of two in 1.." +
               std::to_string(kVirtqMaxSize));
  struct Area {
    const char* name;
    uint64_t gpa;
    uint64_t bytes;
    uint64_t align;
  };
  const Area areas[] = {
      {"descriptor table", config_.descriptor_table, virtq_descriptor_table_bytes(size), kVirtqDescriptorTableAlign},
      {"available ring", config_.avail_ring, virtq_avail_ring_bytes(size), kVirtqAvailRingAlign},
      {"used ring", config_.used_ring, virtq_used_ring_bytes(size), kVirtqUsedRingAlign},
  };
  for (const auto& area : areas) {
    if (area.gpa % area.align != 0)
      fail_queue(std::string("virtqueue ") + area.name + " at " + hex(area.gpa) + " is not " +
                 std::to_string(area.align) + "-byte aligned");
    if (!memory_.contains(area.gpa, area.bytes))
      fail_queue(std::string("virtqueue ") + area.name + " " + hex(area.gpa) + "+" + hex(area.bytes) +
                 " is outside guest RAM");
  }
  validated_ = true;
}

bool Virtqueue::usable() {
  if (broken_) return false;
  if (!validated_) validate();
  return true;
}

void Virtqueue::fail_queue(const std::string& what) {
  broken_ = true;
  throw VirtqueueError(what);
}

// The host address of a 16-bit ring field; the areas are validated and aligned, and guest RAM
// is mapped page-aligned, so the result is 2-byte aligned.
uint16_t* Virtqueue::host_u16(uint64_t gpa) const {
  return reinterpret_cast<uint16_t*>(memory_.slice(gpa, sizeof(uint16_t)).data());
}

VirtqDescriptor Virtqueue::read_descriptor(uint64_t table, uint32_t index) const {
  return memory_.read_object<VirtqDescriptor>(table + uint64_t{index} * sizeof(VirtqDescriptor));
}

void Virtqueue::walk_chain(uint16_t head, DescriptorChain& chain) const {
  auto fail = [head](const std::string& what) {
    return VirtqueueError("virtqueue chain " + std::to_string(head) + ": " + what, head);
  };
  uint64_t total_bytes = 0;
  bool seen_writable = false;
  auto add_buffer = [&](const VirtqDescriptor& descriptor) {
    if (descriptor.len == 0) throw fail("zero-length buffer at " + hex(descriptor.addr));
    if (!memory_.contains(descriptor.addr, descriptor.len))
      throw fail("buffer " + hex(descriptor.addr) + "+" + hex(descriptor.len) + " is outside guest RAM");
    const bool writable = (descriptor.flags & kVirtqDescFlagWrite) != 0;
    if (!writable && seen_writable) throw fail("device-readable buffer after a device-writable one");
    seen_writable = seen_writable || writable;
    total_bytes += descriptor.len;
    if (total_bytes > std::numeric_limits<uint32_t>::max()) throw fail("total length exceeds 4 GiB");
    chain.buffers.push_back(VirtqBuffer{descriptor.addr, descriptor.len, writable});
  };

  uint32_t index = head;
  uint32_t visited = 0;
  for (;;) {
    if (++visited > config_.size) throw fail("more descriptors than the queue size (a loop)");
    const VirtqDescriptor descriptor = read_descriptor(config_.descriptor_table, index);
    if ((descriptor.flags & kVirtqDescFlagIndirect) != 0) {
      if (!config_.indirect_desc) throw fail("indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC");
      if ((descriptor.flags & kVirtqDescFlagNext) != 0) throw fail("indirect descriptor with NEXT set");
      if (descriptor.len == 0 || descriptor.len % sizeof(VirtqDescriptor) != 0)
        throw fail("indirect table length " + std::to_string(descriptor.len) + " is not a non-zero multiple of 16");
      const uint32_t entries = descriptor.len / sizeof(VirtqDescriptor);
      if (entries > kVirtqMaxIndirectDescriptors)
        throw fail("indirect table of " + std::to_string(entries) + " descriptors is too large");
      if (!memory_.contains(descriptor.addr, descriptor.len))
        throw fail("indirect table " + hex(descriptor.addr) + "+" + hex(descriptor.len) + " is outside guest RAM");
      uint32_t entry = 0;
      uint32_t entries_visited = 0;
      for (;;) {
        if (++entries_visited > entries) throw fail("more descriptors than the indirect table holds (a loop)");
        const VirtqDescriptor inner = read_descriptor(descriptor.addr, entry);
        if ((inner.flags & kVirtqDescFlagIndirect) != 0) throw fail("nested indirect table");
        add_buffer(inner);
        if ((inner.flags & kVirtqDescFlagNext) == 0) break;
        if (inner.next >= entries)
          throw fail("indirect next index " + std::to_string(inner.next) + " is outside a table of " +
                     std::to_string(entries));
        entry = inner.next;
      }
      return;  // NEXT is never set with INDIRECT: the table ends the chain
    }
    add_buffer(descriptor);
    if ((descriptor.flags & kVirtqDescFlagNext) == 0) return;
    if (descriptor.next >= config_.size)
      throw fail("next index " + std::to_string(descriptor.next) + " is outside a queue of " +
                 std::to_string(config_.size));
    index = descriptor.next;
  }
}

std::optional<DescriptorChain> Virtqueue::pop() {
  if (!usable()) return std::nullopt;
  const uint16_t avail_idx = load_avail_idx();
  const uint16_t pending = static_cast<uint16_t>(avail_idx - next_avail_);
  if (pending == 0) return std::nullopt;
  if (pending > config_.size)
    fail_queue("virtqueue avail idx " + std::to_string(avail_idx) + " is " + std::to_string(pending) + " ahead of " +
               std::to_string(next_avail_) + ", more than the queue size " + std::to_string(config_.size));
  const uint64_t slot = config_.avail_ring + kAvailRingOffset + uint64_t{2} * (next_avail_ % config_.size);
  const uint16_t head = std::atomic_ref<uint16_t>(*host_u16(slot)).load(std::memory_order_relaxed);
  ++next_avail_;  // this entry is consumed whether or not its chain is well formed
  return chain_from(head, "virtqueue head index ");
}

DescriptorChain Virtqueue::chain_at(uint16_t head) {
  if (!usable()) throw VirtqueueError("virtqueue is broken");
  return chain_from(head, "virtqueue held head index ");
}

DescriptorChain Virtqueue::chain_from(uint16_t head, const char* what) {
  if (head >= config_.size)
    fail_queue(what + std::to_string(head) + " is outside a queue of " + std::to_string(config_.size));
  DescriptorChain chain;
  chain.head = head;
  walk_chain(head, chain);
  return chain;
}

void Virtqueue::push_used(uint16_t head, uint32_t bytes_written) {
  if (!usable()) return;
  if (head >= config_.size)
    fail_queue("used head index " + std::to_string(head) + " is outside a queue of " + std::to_string(config_.size));
  // Before the used entry: once the driver sees it, the descriptors are its own again.
  if (memory_.dirty_logging()) mark_written(head, bytes_written);
  const uint64_t slot = config_.used_ring + kUsedRingOffset + sizeof(VirtqUsedElement) * (next_used_ % config_.size);
  memory_.write_object(slot, VirtqUsedElement{head, bytes_written});
  ++next_used_;
  const uint64_t used_idx = config_.used_ring + kUsedIdxOffset;
  std::atomic_ref<uint16_t>(*host_u16(used_idx)).store(next_used_, std::memory_order_release);
  memory_.mark_dirty(slot, sizeof(VirtqUsedElement));
  memory_.mark_dirty(used_idx, sizeof(uint16_t));
}

void Virtqueue::mark_written(uint16_t head, uint32_t bytes_written) const {
  DescriptorChain chain;
  try {
    walk_chain(head, chain);
  } catch (const VirtqueueError&) {
    return;  // a chain that does not walk was never served: nothing was written into it
  }
  uint64_t left = bytes_written;
  const VirtqBuffer* last_writable = nullptr;
  for (const VirtqBuffer& buffer : chain.buffers) {
    if (!buffer.device_writable) continue;
    const uint64_t length = std::min<uint64_t>(left, buffer.len);
    memory_.mark_dirty(buffer.addr, length);
    left -= length;
    last_writable = &buffer;
  }
  // A device may write the chain's last byte whatever bytes_written says: virtio-blk's
  // status byte, written for a request failed with a length of 0 or 1.
  if (last_writable) memory_.mark_dirty(last_writable->addr + last_writable->len - 1, 1);
}

bool Virtqueue::needs_notification() {
  if (!usable()) return false;
  // The used idx store must be visible before the driver's suppression fields are read.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (config_.event_idx) {
    const uint16_t used_event = std::atomic_ref<uint16_t>(*host_u16(used_event_gpa())).load(std::memory_order_relaxed);
    const uint16_t old_used = signalled_used_;
    const bool old_valid = signalled_used_valid_;
    signalled_used_ = next_used_;
    signalled_used_valid_ = true;
    if (!old_valid) return true;
    return virtq_need_event(used_event, next_used_, old_used);
  }
  const uint16_t flags = std::atomic_ref<uint16_t>(*host_u16(config_.avail_ring + kAvailFlagsOffset))
                             .load(std::memory_order_relaxed);
  return (flags & kVirtqAvailFlagNoInterrupt) == 0;
}

// The event fields sit after each ring's entries (spec 2.7.10): used_event ends the available
// ring, avail_event ends the used ring.
uint64_t Virtqueue::used_event_gpa() const {
  return config_.avail_ring + kAvailRingOffset + uint64_t{2} * config_.size;
}

uint64_t Virtqueue::avail_event_gpa() const {
  return config_.used_ring + kUsedRingOffset + sizeof(VirtqUsedElement) * uint64_t{config_.size};
}

uint16_t Virtqueue::load_avail_idx() const {
  return std::atomic_ref<uint16_t>(*host_u16(config_.avail_ring + kAvailIdxOffset)).load(std::memory_order_acquire);
}

void Virtqueue::store_avail_event(uint16_t event) {
  std::atomic_ref<uint16_t>(*host_u16(avail_event_gpa())).store(event, std::memory_order_relaxed);
  // The driver must see avail_event before the device looks at avail idx again.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  memory_.mark_dirty(avail_event_gpa(), sizeof(uint16_t));
}

void Virtqueue::set_avail_event() {
  if (!config_.event_idx || !usable()) return;
  store_avail_event(next_avail_);
}

bool Virtqueue::has_available() {
  return usable() && load_avail_idx() != next_avail_;
}

bool Virtqueue::set_notifications(bool enabled) {
  if (!usable()) return false;
  notifications_enabled_ = enabled;
  if (config_.event_idx) {
    // The driver notifies when its new avail idx passes avail_event (virtq_need_event); one
    // behind what was taken is never passed while the device keeps taking.
    store_avail_event(static_cast<uint16_t>(enabled ? next_avail_ : next_avail_ - 1));
  } else {
    std::atomic_ref<uint16_t>(*host_u16(config_.used_ring + kUsedFlagsOffset))
        .store(enabled ? 0 : kVirtqUsedFlagNoNotify, std::memory_order_relaxed);
    // The driver reads our flag after writing avail idx; we read avail idx after writing the
    // flag. The fence keeps one of us from missing the other.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    memory_.mark_dirty(config_.used_ring + kUsedFlagsOffset, sizeof(uint16_t));
  }
  return enabled && has_available();
}

std::string Virtqueue::describe() const {
  std::ostringstream out;
  out << "size=" << config_.size << " next_avail=" << next_avail_ << " next_used=" << next_used_;
  if (broken_) out << " BROKEN";
  if (!validated_) return out.str() + " (not validated)";
  out << " | driver: avail_idx=" << *host_u16(config_.avail_ring + kAvailIdxOffset)
      << " avail_flags=" << *host_u16(config_.avail_ring + kAvailFlagsOffset)
      << " used_event=" << *host_u16(used_event_gpa())
      << " | ring: used_idx=" << *host_u16(config_.used_ring + kUsedIdxOffset)
      << " used_flags=" << *host_u16(config_.used_ring + kUsedFlagsOffset)
      << " avail_event=" << *host_u16(avail_event_gpa())
      << " | notifications=" << (notifications_enabled_ ? "on" : "off") << " event_idx=" << config_.event_idx;
  return out.str();
}

VirtqueueState Virtqueue::save() const { return VirtqueueState{config_, next_avail_, next_used_}; }

void Virtqueue::restore(const VirtqueueState& state) {
  Virtqueue candidate(memory_, state.config);
  candidate.validate();
  config_ = state.config;
  validated_ = true;
  broken_ = false;
  next_avail_ = state.next_avail;
  next_used_ = state.next_used;
  signalled_used_ = state.next_used;
  signalled_used_valid_ = false;  // unknown: notify once rather than risk a lost interrupt
  notifications_enabled_ = true;
}

std::optional<DescriptorChain> Virtqueue::next_request(uint32_t* rejected) {
  for (;;) {
    try {
      if (auto chain = pop()) return chain;
      // Going idle: ask for a notification (EVENT_IDX), then look once more for a chain made
      // available before the driver could see that request.
      if (!notifications_enabled_) return std::nullopt;
      set_avail_event();
      return pop();
    } catch (const VirtqueueError& error) {
      if (!error.head()) throw;
      push_used(*error.head(), 0);  // that chain alone is bad: fail it and go on
      ++*rejected;
    }
  }
}

}  // namespace kdom::devices::virtio
