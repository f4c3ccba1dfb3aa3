// Virtqueue: the device side of a virtio 1.x split virtqueue (spec section 2.7), shared by
// every virtio device. It takes available descriptor chains from the driver, checking every
// index, flag, address and length the guest wrote before anything is used, hands them to
// the device as lists of buffers, and returns them through the used ring. All guest memory
// access goes through GuestMemory; hostile rings throw VirtqueueError and touch nothing. What
// the device wrote into guest memory is marked in GuestMemory's dirty log when one is kept.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "memory/guest_memory.h"

namespace kdom::devices::virtio {

// virtio is little-endian; the ring layouts below are read as host integers.
static_assert(std::endian::native == std::endian::little, "virtqueue code assumes a little-endian host");

// A malformed queue configuration or ring contents. When the failure lies in one chain whose
// head index was valid, head() names it: that chain has been consumed, and the device may fail
// the request with push_used(head, 0) and go on. With no head, the queue as a whole is broken
// and stays so (Virtqueue::broken); the device should set DEVICE_NEEDS_RESET.
class VirtqueueError : public Error {
 public:
  explicit VirtqueueError(const std::string& what, std::optional<uint16_t> head = std::nullopt)
      : Error(what), head_(head) {}
  std::optional<uint16_t> head() const { return head_; }

 private:
  std::optional<uint16_t> head_;
};

// Ring layouts as the driver writes them in guest memory (spec 2.7.5, 2.7.6, 2.7.8).
#pragma pack(push, 1)
struct VirtqDescriptor {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
struct VirtqUsedElement {
  uint32_t id;
  uint32_t len;
};
#pragma pack(pop)
static_assert(sizeof(VirtqDescriptor) == 16);
static_assert(sizeof(VirtqUsedElement) == 8);

inline constexpr uint16_t kVirtqDescFlagNext = 1;
inline constexpr uint16_t kVirtqDescFlagWrite = 2;
inline constexpr uint16_t kVirtqDescFlagIndirect = 4;
inline constexpr uint16_t kVirtqAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kVirtqUsedFlagNoNotify = 1;

inline constexpr uint32_t kVirtqMaxSize = 32768;
// The largest indirect table accepted, in descriptors.
inline constexpr uint32_t kVirtqMaxIndirectDescriptors = 32768;

inline constexpr uint64_t kVirtqDescriptorTableAlign = 16;
inline constexpr uint64_t kVirtqAvailRingAlign = 2;
inline constexpr uint64_t kVirtqUsedRingAlign = 4;

// Byte sizes of the three areas for a queue of `size` entries (event fields included).
constexpr uint64_t virtq_descriptor_table_bytes(uint32_t size) { return uint64_t{16} * size; }
constexpr uint64_t virtq_avail_ring_bytes(uint32_t size) { return 6 + uint64_t{2} * size; }
constexpr uint64_t virtq_used_ring_bytes(uint32_t size) { return 6 + uint64_t{8} * size; }

// The spec's vring_need_event: true when the driver's event index lies in (old_idx, new_idx],
// all in 16-bit wrapping arithmetic.
constexpr bool virtq_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

struct VirtqueueConfig {
  uint32_t size = 0;  // power of two, 1..32768
  uint64_t descriptor_table = 0;
  uint64_t avail_ring = 0;
  uint64_t used_ring = 0;
  bool event_idx = false;        // VIRTIO_RING_F_EVENT_IDX negotiated
  bool indirect_desc = false;    // VIRTIO_RING_F_INDIRECT_DESC negotiated
  bool operator==(const VirtqueueConfig&) const = default;
};

// The queue's own state, for save/restore (migration).
struct VirtqueueState {
  VirtqueueConfig config;
  uint16_t next_avail = 0;
  uint16_t next_used = 0;
  bool operator==(const VirtqueueState&) const = default;
};

// One guest buffer of a chain: readable by the device, or (device_writable) written by it.
struct VirtqBuffer {
  uint64_t addr = 0;
  uint32_t len = 0;
  bool device_writable = false;
  bool operator==(const VirtqBuffer&) const = default;
};

// A chain taken from the available ring; every buffer lies wholly inside guest RAM, and all
// readable buffers come before all writable ones.
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<VirtqBuffer> buffers;
  uint64_t readable_bytes() const;
  uint64_t writable_bytes() const;
};

class Virtqueue {
 public:
  Virtqueue(const GuestMemory& memory, const VirtqueueConfig& config);

  const VirtqueueConfig& config() const { return config_; }

  // Throws VirtqueueError unless size is a power of two <= 32768 and the descriptor table,
  // available ring and used ring are aligned (16, 2, 4) and wholly inside guest RAM.
  // pop, push_used, needs_notification and set_avail_event validate first if not yet done.
  void validate();

  // Whether the queue is broken as a whole: its configuration or the driver's ring indices
  // broke the rules (each time, a VirtqueueError without a head was thrown), or its device
  // gave up on it (mark_broken). A broken queue stays so and serves nothing: pop and
  // next_request find no chains, push_used and the notification calls touch nothing, and
  // has_available and needs_notification say no. Only a new queue (a device reset) mends it.
  bool broken() const { return broken_; }
  void mark_broken() { broken_ = true; }

  // The next available chain, or nullopt when the driver has made none available (or the
  // queue is broken).
  std::optional<DescriptorChain> pop();

  // The next well-formed chain for a device to serve. A malformed chain whose head is valid
  // is returned to the driver at once (used, length 0) and counted in `*rejected`; when
  // nothing is available it asks for a notification (set_avail_event) and looks once more.
  // Throws VirtqueueError only when the queue as a whole is broken (no head).
  std::optional<DescriptorChain> next_request(uint32_t* rejected);

  // The chain starting at descriptor `head`, read again from the descriptor table: one the
  // device took from the available ring before and still holds (a restored device serves the
  // requests its saved state held). Checked as pop checks a chain: a malformed one throws
  // VirtqueueError with its head (the chain is the device's to return), a head outside the
  // queue throws one without (the queue is broken). Does not move the ring's indices.
  DescriptorChain chain_at(uint16_t head);

  // Returns chain `head` to the driver, saying the device wrote `bytes_written` bytes into it.
  // While guest memory keeps a dirty log (live migration), marks what was written: the
  // chain's device-writable buffers up to bytes_written and its last writable byte (read
  // again from the descriptor table), and the used-ring entry and index. Every ring field the
  // queue writes (avail_event, used flags) is marked likewise.
  void push_used(uint16_t head, uint32_t bytes_written);

  // Whether the driver wants an interrupt for the used entries added since the last call
  // that returned (EVENT_IDX: used_event; otherwise VRING_AVAIL_F_NO_INTERRUPT).
  bool needs_notification();

  // With EVENT_IDX: asks the driver to notify when it makes the next chain after those already
  // popped available (writes avail_event). Does nothing without EVENT_IDX. A device that goes
  // idle after this must check for available chains again (pop) before sleeping.
  void set_avail_event();

  // Whether the driver has made chains available that pop() has not taken yet. Cheap (one read
  // of avail idx), for a device polling the ring.
  bool has_available();

  // A device that polls the available ring turns driver notifications off while it polls
  // (used flags NO_NOTIFY, or with EVENT_IDX an avail_event the driver has passed) and back on
  // before it sleeps. While they are off, next_request() does not ask for one. Turning them on
  // returns whether chains became available meanwhile: the device must serve those before
  // sleeping, since the driver may have skipped the notification for them.
  bool set_notifications(bool enabled);

  // One line for debugging a stalled queue: the device's indices beside the driver's, read
  // from the rings now (avail idx, flags and used_event; used idx, flags and avail_event).
  std::string describe() const;

  VirtqueueState save() const;
  // Validates state.config first; on failure throws and leaves the queue as it was.
  void restore(const VirtqueueState& state);

 private:
  // Validates first if not yet done; false when the queue is broken.
  bool usable();
  // Marks the queue broken and throws `what` (a VirtqueueError without a head).
  [[noreturn]] void fail_queue(const std::string& what);
  uint16_t* host_u16(uint64_t gpa) const;
  uint64_t used_event_gpa() const;
  uint64_t avail_event_gpa() const;
  // The driver's avail idx, read with acquire ordering (the ring entries before it are visible).
  uint16_t load_avail_idx() const;
  // Writes avail_event (EVENT_IDX) and fences it against the next read of avail idx.
  void store_avail_event(uint16_t event);
  VirtqDescriptor read_descriptor(uint64_t table, uint32_t index) const;
  void walk_chain(uint16_t head, DescriptorChain& chain) const;
  // push_used's marks of the buffers chain `head` had written into.
  void mark_written(uint16_t head, uint32_t bytes_written) const;
  // The chain at `head` (`what` names the head in the error when it is outside the queue).
  DescriptorChain chain_from(uint16_t head, const char* what);

  const GuestMemory& memory_;
  VirtqueueConfig config_;
  bool validated_ = false;
  bool broken_ = false;
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  // The used index at the last needs_notification call; invalid after restore (notify once).
  uint16_t signalled_used_ = 0;
  bool signalled_used_valid_ = true;
  bool notifications_enabled_ = true;
};

}  // namespace kdom::devices::virtio
