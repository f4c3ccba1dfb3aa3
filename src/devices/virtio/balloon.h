// virtio-balloon (virtio 1.x section 5.5): lets the host take memory back from a running
// guest. The host sets a target (num_pages, in 4 KiB pages); the guest's driver allocates that
// many pages and hands their frame numbers over the inflate queue, and kdom gives the host
// memory behind them back (madvise MADV_REMOVE through GuestMemory::discard). Deflating
// needs only accounting: the guest's next touch of a page backs it again. With free page
// reporting the guest also hands over ranges of free pages it keeps. The statistics queue
// holds one buffer of (tag, value) pairs from the guest: kdom keeps the latest values and
// returns the buffer when it wants fresh ones (spec 5.5.6.3).
//
// Every frame number and range the guest gives is checked against guest RAM: one outside it
// (the PCI hole included) is refused and counted, never discarded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "devices/virtio/virtio_device.h"

namespace kdom::devices::virtio {

// Feature bits (spec 5.5.3).
inline constexpr uint64_t kBalloonFeatureMustTellHost = 1ULL << 0;
inline constexpr uint64_t kBalloonFeatureStatsVq = 1ULL << 1;
inline constexpr uint64_t kBalloonFeatureDeflateOnOom = 1ULL << 2;
inline constexpr uint64_t kBalloonFeatureFreePageHint = 1ULL << 3;
inline constexpr uint64_t kBalloonFeaturePagePoison = 1ULL << 4;
inline constexpr uint64_t kBalloonFeaturePageReporting = 1ULL << 5;

// The balloon's page size: frame numbers are in units of 4 KiB whatever the guest's page size.
inline constexpr uint64_t kBalloonPageShift = 12;
inline constexpr uint64_t kBalloonPageSize = uint64_t{1} << kBalloonPageShift;

// Configuration space offsets (spec 5.5.4).
inline constexpr uint64_t kBalloonConfigNumPages = 0;
inline constexpr uint64_t kBalloonConfigActual = 4;
inline constexpr uint64_t kBalloonConfigSize = 16;  // with free_page_hint_cmd_id and poison_val (unused)

struct BalloonDeviceConfig {
  uint32_t target_pages = 0;   // initial num_pages
  bool deflate_on_oom = false;  // offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM
  bool free_page_reporting = false;  // offer VIRTIO_BALLOON_F_REPORTING and its queue
};

// The statistics tags of spec 5.5.6.3 by name; an unknown tag is named "tag_<number>".
std::string balloon_stat_name(uint16_t tag);

// The latest statistics the guest pushed.
struct BalloonStats {
  std::map<std::string, uint64_t> values;
  std::optional<std::chrono::steady_clock::time_point> updated;
};

// Parses a statistics buffer: packed little-endian (le16 tag, le64 value) entries; a trailing
// partial entry is ignored, a repeated tag keeps its last value.
std::map<std::string, uint64_t> parse_balloon_stats(std::span<const uint8_t> bytes);

// What the guest has done with the balloon, for the control interface.
struct BalloonCounters {
  uint64_t pages_inflated = 0;   // frame numbers taken from the inflate queue and discarded
  uint64_t pages_deflated = 0;   // frame numbers taken from the deflate queue
  uint64_t pages_refused = 0;    // frame numbers or reported pages outside guest RAM
  uint64_t pages_reported = 0;   // free pages reported (and discarded)
  uint64_t bad_requests = 0;     // malformed chains returned unused
};

class BalloonDevice : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 128;
  // At most this many bytes of one inflate/deflate/stats chain are read (Linux sends at most
  // 256 frame numbers, 1 KiB, at a time); the rest is ignored.
  static constexpr uint32_t kMaxRequestBytes = 64 * 1024;

  explicit BalloonDevice(const BalloonDeviceConfig& config);

  DeviceType type() const override { return DeviceType::kBalloon; }
  uint64_t offered_features() const override;
  // inflateq, deflateq, statsq, then reporting_vq when free page reporting is offered.
  std::vector<uint16_t> queue_max_sizes() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  void activate(const GuestMemory& memory, uint64_t negotiated_features,
                std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                ConfigInterrupt config_interrupt) override;
  // Serves the queue in the caller's thread. A queue the driver broke is stopped and the
  // VirtqueueError rethrown (the transport then asks for a reset).
  void notify_queue(uint16_t queue_index) override;
  void reset() override;
  // Where resume() reports a queue it found broken.
  void set_failure_handler(DeviceFailure failure) override;

  // While quiesced, notifications serve nothing, a new target's configuration interrupt
  // waits and request_stats says no; resume() serves every queue (looking at the rings
  // afresh) and raises the configuration interrupt that waited.
  void quiesce() override;
  void resume() override;
  // {"target_pages", "actual_pages", "target_reached_told", "config_interrupt_pending",
  //  "stats_buffer_held" with "stats_buffer_head" (the statistics buffer kept from the guest),
  //  "stats": {name: value}, "stats_updated" with "stats_age_ms" (how long before the save the
  //  guest pushed them), "counters": {pages_inflated, pages_deflated, pages_refused,
  //  pages_reported, bad_requests}}. activate() after load_state keeps the statistics buffer
  // (checked against the statistics queue: a StateError if there is none or the head is
  // outside it) and raises a configuration interrupt that was pending.
  nlohmann::json save_state() const override;
  void load_state(const nlohmann::json& state) override;

  // The host's side, from any thread.
  // Sets num_pages and, once the driver is running, raises the configuration interrupt.
  void set_target_pages(uint32_t pages);
  // Told once per target when the driver's `actual` comes to equal it (the driver wrote it, or
  // the host set a target the balloon already holds), in the thread that made it so and
  // outside the device's lock. A target the balloon holds when the device is made (0 at start)
  // is not reported.
  using TargetReached = std::function<void(uint32_t actual_pages, uint32_t target_pages)>;
  void set_target_reached_handler(TargetReached handler);
  uint32_t target_pages() const;
  // The driver's `actual` field: pages it holds in the balloon now.
  uint32_t actual_pages() const;
  BalloonStats stats() const;
  BalloonCounters counters() const;
  // Returns the held statistics buffer to the guest, asking it for fresh values; false when
  // the guest has none queued (no statistics queue, or not running yet).
  bool request_stats();

  // Queue processing, exposed for tests and the fuzzer.
  enum class PageAction { kInflate, kDeflate, kReport };
  // Takes every available chain of an inflate, deflate or reporting queue, discards (or
  // counts) the pages it names and returns it; true when any chain was used.
  static bool serve_pages(const GuestMemory& memory, Virtqueue& queue, PageAction action, BalloonCounters& counters);
  // Gives the host memory behind frame numbers back; those outside guest RAM are counted in
  // pages_refused. Runs of consecutive frames go to the host in one call.
  static void discard_frames(const GuestMemory& memory, std::span<const uint32_t> frames, BalloonCounters& counters);

 private:
  void serve_stats_locked();
  // Serves queue `queue_index` (mutex_ held); throws VirtqueueError for a broken queue.
  void serve_queue_locked(uint16_t queue_index);

  const bool deflate_on_oom_;
  const bool free_page_reporting_;

  mutable std::mutex mutex_;
  uint32_t target_pages_;
  uint32_t actual_pages_ = 0;
  bool target_reached_told_;  // the handler heard of the current target (or need not)
  TargetReached target_reached_;
  BalloonStats stats_;
  BalloonCounters counters_;

  const GuestMemory* memory_ = nullptr;
  std::shared_ptr<Virtqueue> inflate_;
  std::shared_ptr<Virtqueue> deflate_;
  std::shared_ptr<Virtqueue> stats_queue_;
  std::shared_ptr<Virtqueue> reporting_;
  // The queue index each role got at activation (they depend on the features negotiated).
  std::optional<uint16_t> stats_index_;
  std::optional<uint16_t> reporting_index_;
  std::optional<uint16_t> held_stats_head_;  // the guest's statistics buffer, kept until we want more
  QueueInterrupt queue_interrupt_;
  ConfigInterrupt config_interrupt_;
  DeviceFailure failure_;
  bool quiesced_ = false;
  bool config_interrupt_pending_ = false;  // a new target the driver has not been told of
  // From load_state, for the next activate: the statistics buffer the saved device held.
  std::optional<uint16_t> restored_stats_head_;
};

}  // namespace kdom::devices::virtio
