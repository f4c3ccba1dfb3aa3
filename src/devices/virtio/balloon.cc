// virtio-balloon queue processing, configuration space and statistics.
#include "devices/virtio/balloon.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "snapshot/state_json.h"

namespace kdom::devices::virtio {

namespace {

constexpr size_t kStatEntryBytes = 10;  // le16 tag, le64 value, packed

// virtio is little-endian, and so is the host (queue.h asserts it).
template <typename T>
T load(const uint8_t* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return value;
}

// The device-readable bytes of a chain, at most `limit` of them.
std::vector<uint8_t> readable_bytes(const GuestMemory& memory, const DescriptorChain& chain, size_t limit) {
  std::vector<uint8_t> bytes;
  for (const auto& buffer : chain.buffers) {
    if (buffer.device_writable || bytes.size() >= limit) continue;
    const size_t take = std::min<size_t>(buffer.len, limit - bytes.size());
    const size_t at = bytes.size();
    bytes.resize(at + take);
    memory.read(buffer.addr, bytes.data() + at, take);
  }
  return bytes;
}

}  // namespace

std::string balloon_stat_name(uint16_t tag) {
  static constexpr const char* kNames[] = {
      "swap_in",         "swap_out",      "major_faults",        "minor_faults",      "free_memory",
      "total_memory",    "available_memory", "disk_caches",      "hugetlb_allocations", "hugetlb_failures",
  };
  if (tag < std::size(kNames)) return kNames[tag];
  return "tag_" + std::to_string(tag);
}

std::map<std::string, uint64_t> parse_balloon_stats(std::span<const uint8_t> bytes) {
  std::map<std::string, uint64_t> values;
  for (size_t at = 0; at + kStatEntryBytes <= bytes.size(); at += kStatEntryBytes) {
    values[balloon_stat_name(load<uint16_t>(bytes.data() + at))] = load<uint64_t>(bytes.data() + at + 2);
  }
  return values;
}

BalloonDevice::BalloonDevice(const BalloonDeviceConfig& config)
    : deflate_on_oom_(config.deflate_on_oom),
      free_page_reporting_(config.free_page_reporting),
      target_pages_(config.target_pages),
      target_reached_told_(config.target_pages == 0) {}

uint64_t BalloonDevice::offered_features() const {
  uint64_t features = kFeatureVersion1 | kFeatureRingIndirectDesc | kFeatureRingEventIdx | kBalloonFeatureStatsVq;
  if (deflate_on_oom_) features |= kBalloonFeatureDeflateOnOom;
  if (free_page_reporting_) features |= kBalloonFeaturePageReporting;
  return features;
}

std::vector<uint16_t> BalloonDevice::queue_max_sizes() const {
  std::vector<uint16_t> sizes{kQueueSize, kQueueSize, kQueueSize};
  if (free_page_reporting_) sizes.push_back(kQueueSize);
  return sizes;
}

void BalloonDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  uint8_t image[kBalloonConfigSize] = {};
  {
    std::lock_guard lock(mutex_);
    std::memcpy(image + kBalloonConfigNumPages, &target_pages_, sizeof(target_pages_));
    std::memcpy(image + kBalloonConfigActual, &actual_pages_, sizeof(actual_pages_));
  }
  read_config_image(image, offset, data);
}

void BalloonDevice::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // Only `actual` is the driver's to write; bytes elsewhere are ignored.
  TargetReached tell;
  uint32_t reached = 0;
  {
    std::lock_guard lock(mutex_);
    uint8_t actual[sizeof(actual_pages_)];
    std::memcpy(actual, &actual_pages_, sizeof(actual));
    for (size_t i = 0; i < data.size(); ++i) {
      const uint64_t at = offset + i;
      if (at >= kBalloonConfigActual && at < kBalloonConfigActual + sizeof(actual)) actual[at - kBalloonConfigActual] = data[i];
    }
    actual_pages_ = load<uint32_t>(actual);
    if (actual_pages_ == target_pages_ && !target_reached_told_) {
      target_reached_told_ = true;
      tell = target_reached_;
      reached = actual_pages_;
    }
  }
  if (tell) tell(reached, reached);
}

void BalloonDevice::activate(const GuestMemory& memory, uint64_t negotiated_features,
                             std::vector<std::shared_ptr<Virtqueue>> queues, QueueInterrupt queue_interrupt,
                             ConfigInterrupt config_interrupt) {
  if (queues.size() != queue_max_sizes().size())
    throw Error("virtio-balloon: activated with " + std::to_string(queues.size()) + " queues");
  // Queues are numbered in order, skipping those whose feature was not negotiated (as
  // Linux numbers them): without the statistics queue, reporting_vq is queue 2.
  uint16_t next = 2;
  std::optional<uint16_t> stats_index, reporting_index;
  if (negotiated_features & kBalloonFeatureStatsVq) stats_index = next++;
  if (free_page_reporting_ && (negotiated_features & kBalloonFeaturePageReporting)) reporting_index = next++;

  std::lock_guard lock(mutex_);
  // A statistics buffer a saved state holds must belong to the statistics queue the driver
  // set up now; checked before anything changes.
  if (restored_stats_head_) {
    const std::shared_ptr<Virtqueue>& stats = stats_index ? queues[*stats_index] : queues[0];
    if (!stats_index || !stats)
      throw snapshot::StateError("saved state of virtio-balloon: 'stats_buffer_head' without a statistics queue");
    if (*restored_stats_head_ >= stats->config().size)
      throw snapshot::StateError("saved state of virtio-balloon: 'stats_buffer_head' " +
                                 std::to_string(*restored_stats_head_) + " is outside a statistics queue of size " +
                                 std::to_string(stats->config().size));
  }
  memory_ = &memory;
  quiesced_ = false;
  inflate_ = queues[0];
  deflate_ = queues[1];
  stats_index_ = stats_index;
  reporting_index_ = reporting_index;
  stats_queue_ = stats_index ? queues[*stats_index] : nullptr;
  reporting_ = reporting_index ? queues[*reporting_index] : nullptr;
  held_stats_head_ = restored_stats_head_;
  restored_stats_head_.reset();
  queue_interrupt_ = std::move(queue_interrupt);
  config_interrupt_ = std::move(config_interrupt);
  // A target set while the saved domain was paused: the driver has not heard of it yet.
  if (config_interrupt_pending_) {
    config_interrupt_pending_ = false;
    if (config_interrupt_) config_interrupt_();
  }
  // Linux queues its first statistics buffer and notifies before it sets DRIVER_OK, when the
  // transport still ignores notifications: take that buffer now.
  if (!stats_queue_) return;
  serve_stats_locked();  // a VirtqueueError: broken from the start, the transport asks for a reset
}

void BalloonDevice::reset() {
  std::lock_guard lock(mutex_);
  memory_ = nullptr;
  inflate_.reset();
  deflate_.reset();
  stats_queue_.reset();
  reporting_.reset();
  stats_index_.reset();
  reporting_index_.reset();
  held_stats_head_.reset();
  restored_stats_head_.reset();
  quiesced_ = false;
  config_interrupt_pending_ = false;
  actual_pages_ = 0;  // a driver that resets the device has given every page back
  target_reached_told_ = target_pages_ == 0;
  queue_interrupt_ = nullptr;
  config_interrupt_ = nullptr;
}

void BalloonDevice::set_failure_handler(DeviceFailure failure) {
  std::lock_guard lock(mutex_);
  failure_ = std::move(failure);
}

void BalloonDevice::quiesce() {
  std::lock_guard lock(mutex_);
  quiesced_ = true;
}

void BalloonDevice::resume() {
  DeviceFailure failure;
  std::string why;
  ConfigInterrupt interrupt;
  {
    std::lock_guard lock(mutex_);
    if (!quiesced_) return;
    quiesced_ = false;
    if (memory_ == nullptr) return;
    if (config_interrupt_pending_) {
      config_interrupt_pending_ = false;
      interrupt = config_interrupt_;
    }
    std::vector<uint16_t> indices{0, 1};
    if (stats_index_) indices.push_back(*stats_index_);
    if (reporting_index_) indices.push_back(*reporting_index_);
    for (uint16_t index : indices) {
      try {
        serve_queue_locked(index);
      } catch (const VirtqueueError& error) {
        failure = failure_;
        why = std::string("virtio-balloon queue ") + std::to_string(index) + ": " + error.what();
        break;
      }
    }
  }
  // Outside the lock: the transport may call back.
  if (interrupt) interrupt();
  if (failure) failure(why);
}

namespace {

// Whether `name` is one balloon_stat_name gives (a saved state names only those).
bool is_stat_name(const std::string& name) {
  for (uint16_t tag = 0; tag < 10; ++tag)
    if (name == balloon_stat_name(tag)) return true;
  const std::string prefix = "tag_";
  if (name.rfind(prefix, 0) != 0 || name.size() <= prefix.size() || name.size() > prefix.size() + 5) return false;
  const std::string digits = name.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return false;
  const unsigned long tag = std::stoul(digits);
  return tag <= UINT16_MAX && balloon_stat_name(static_cast<uint16_t>(tag)) == name;
}

// Statistics older than this at the save are kept as this old (a steady clock cannot go back
// further than it has run).
constexpr uint64_t kMaxStatsAgeMs = 24ULL * 3600 * 1000;

}  // namespace

nlohmann::json BalloonDevice::save_state() const {
  std::lock_guard lock(mutex_);
  nlohmann::json stats = nlohmann::json::object();
  for (const auto& [name, value] : stats_.values) stats[name] = value;
  uint64_t age_ms = 0;
  if (stats_.updated) {
    const auto age = std::chrono::steady_clock::now() - *stats_.updated;
    age_ms = std::min<uint64_t>(
        static_cast<uint64_t>(std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(age).count())),
        kMaxStatsAgeMs);
  }
  return {{"target_pages", target_pages_},
          {"actual_pages", actual_pages_},
          {"target_reached_told", target_reached_told_},
          {"config_interrupt_pending", config_interrupt_pending_},
          {"stats_buffer_held", held_stats_head_.has_value()},
          {"stats_buffer_head", held_stats_head_.value_or(0)},
          {"stats", std::move(stats)},
          {"stats_updated", stats_.updated.has_value()},
          {"stats_age_ms", age_ms},
          {"counters",
           {{"pages_inflated", counters_.pages_inflated},
            {"pages_deflated", counters_.pages_deflated},
            {"pages_refused", counters_.pages_refused},
            {"pages_reported", counters_.pages_reported},
            {"bad_requests", counters_.bad_requests}}}};
}

void BalloonDevice::load_state(const nlohmann::json& state) {
  const std::string what = "virtio-balloon";
  const auto target = static_cast<uint32_t>(snapshot::state_u64(state, "target_pages", what, UINT32_MAX));
  const auto actual = static_cast<uint32_t>(snapshot::state_u64(state, "actual_pages", what, UINT32_MAX));
  const bool told = snapshot::state_bool(state, "target_reached_told", what);
  const bool config_pending = snapshot::state_bool(state, "config_interrupt_pending", what);
  std::optional<uint16_t> stats_head;
  if (snapshot::state_bool(state, "stats_buffer_held", what))
    stats_head = static_cast<uint16_t>(snapshot::state_u64(state, "stats_buffer_head", what, kQueueSize - 1u));
  BalloonStats stats;
  const nlohmann::json& saved_stats = snapshot::state_object(state, "stats", what);
  for (const auto& entry : saved_stats.items()) {
    if (!is_stat_name(entry.key()))
      throw snapshot::StateError("saved state of " + what + ": 'stats' holds an unknown statistic");
    stats.values[entry.key()] = snapshot::state_u64(saved_stats, entry.key(), what + " statistics");
  }
  if (snapshot::state_bool(state, "stats_updated", what)) {
    const uint64_t age_ms = snapshot::state_u64(state, "stats_age_ms", what, kMaxStatsAgeMs);
    stats.updated = std::chrono::steady_clock::now() - std::chrono::milliseconds(age_ms);
  }
  const nlohmann::json& saved_counters = snapshot::state_object(state, "counters", what);
  const std::string counters_what = what + " counters";
  BalloonCounters counters;
  counters.pages_inflated = snapshot::state_u64(saved_counters, "pages_inflated", counters_what);
  counters.pages_deflated = snapshot::state_u64(saved_counters, "pages_deflated", counters_what);
  counters.pages_refused = snapshot::state_u64(saved_counters, "pages_refused", counters_what);
  counters.pages_reported = snapshot::state_u64(saved_counters, "pages_reported", counters_what);
  counters.bad_requests = snapshot::state_u64(saved_counters, "bad_requests", counters_what);

  std::lock_guard lock(mutex_);
  if (memory_ != nullptr) throw Error(what + ": a saved state is loaded before activation, not while active");
  target_pages_ = target;
  actual_pages_ = actual;
  target_reached_told_ = told;
  config_interrupt_pending_ = config_pending;
  restored_stats_head_ = stats_head;
  stats_ = std::move(stats);
  counters_ = counters;
}

void BalloonDevice::notify_queue(uint16_t queue_index) {
  std::lock_guard lock(mutex_);
  if (memory_ == nullptr || quiesced_) return;
  serve_queue_locked(queue_index);
}

void BalloonDevice::serve_queue_locked(uint16_t queue_index) {
  std::shared_ptr<Virtqueue>* queue = nullptr;
  std::optional<PageAction> action;
  if (queue_index == 0) {
    queue = &inflate_, action = PageAction::kInflate;
  } else if (queue_index == 1) {
    queue = &deflate_, action = PageAction::kDeflate;
  } else if (stats_index_ && queue_index == *stats_index_) {
    queue = &stats_queue_;
  } else if (reporting_index_ && queue_index == *reporting_index_) {
    queue = &reporting_, action = PageAction::kReport;
  }
  if (queue == nullptr || !*queue) return;
  bool used = false;
  try {
    if (action) {
      used = serve_pages(*memory_, **queue, *action, counters_);
    } else {
      serve_stats_locked();
      return;
    }
  } catch (const VirtqueueError&) {
    if (queue == &stats_queue_) held_stats_head_.reset();  // the queue stays broken until reset
    throw;
  }
  if (used && queue_interrupt_) queue_interrupt_(queue_index);
}

void BalloonDevice::serve_stats_locked() {
  bool used = false;
  uint32_t rejected = 0;
  while (auto chain = stats_queue_->next_request(&rejected)) {
    // One buffer is the protocol; a driver that queues another gets the older one back.
    if (held_stats_head_) {
      stats_queue_->push_used(*held_stats_head_, 0);
      used = true;
    }
    stats_.values = parse_balloon_stats(readable_bytes(*memory_, *chain, kMaxRequestBytes));
    stats_.updated = std::chrono::steady_clock::now();
    held_stats_head_ = chain->head;
  }
  counters_.bad_requests += rejected;
  if ((used || rejected > 0) && queue_interrupt_ && stats_index_) queue_interrupt_(*stats_index_);
}

bool BalloonDevice::serve_pages(const GuestMemory& memory, Virtqueue& queue, PageAction action,
                                BalloonCounters& counters) {
  bool used = false;
  uint32_t rejected = 0;
  while (auto chain = queue.next_request(&rejected)) {
    if (action == PageAction::kReport) {
      // Each buffer is a run of free pages the guest keeps; whole pages inside it are discarded.
      for (const auto& buffer : chain->buffers) {
        const uint64_t first = (buffer.addr + kBalloonPageSize - 1) & ~(kBalloonPageSize - 1);
        const uint64_t end = (buffer.addr + buffer.len) & ~(kBalloonPageSize - 1);
        if (end <= first) continue;
        try {
          memory.discard(first, end - first);
          counters.pages_reported += (end - first) / kBalloonPageSize;
        } catch (const GuestMemoryError&) {
          counters.pages_refused += (end - first) / kBalloonPageSize;
        }
      }
    } else {
      const std::vector<uint8_t> bytes = readable_bytes(memory, *chain, kMaxRequestBytes);
      std::vector<uint32_t> frames(bytes.size() / sizeof(uint32_t));  // a trailing partial one is ignored
      if (!frames.empty()) std::memcpy(frames.data(), bytes.data(), frames.size() * sizeof(uint32_t));
      if (action == PageAction::kInflate) {
        discard_frames(memory, frames, counters);
      } else {
        counters.pages_deflated += frames.size();
      }
    }
    queue.push_used(chain->head, 0);
    used = true;
  }
  counters.bad_requests += rejected;
  return used || rejected > 0;
}

void BalloonDevice::discard_frames(const GuestMemory& memory, std::span<const uint32_t> frames,
                                   BalloonCounters& counters) {
  size_t i = 0;
  while (i < frames.size()) {
    size_t run = 1;
    while (i + run < frames.size() && frames[i + run] == frames[i] + run) ++run;
    const uint64_t start = uint64_t{frames[i]} << kBalloonPageShift;
    const uint64_t length = uint64_t{run} << kBalloonPageShift;
    if (memory.contains(start, length)) {
      memory.discard(start, length);
      counters.pages_inflated += run;
      i += run;
    } else if (run > 1) {
      // The run leaves RAM somewhere (or crosses into the PCI hole): frame by frame instead.
      for (size_t j = 0; j < run; ++j) discard_frames(memory, frames.subspan(i + j, 1), counters);
      i += run;
    } else {
      ++counters.pages_refused;
      ++i;
    }
  }
}

void BalloonDevice::set_target_pages(uint32_t pages) {
  ConfigInterrupt interrupt;
  TargetReached tell;
  {
    std::lock_guard lock(mutex_);
    if (pages == target_pages_) return;
    target_pages_ = pages;
    if (quiesced_)
      config_interrupt_pending_ = config_interrupt_ != nullptr;  // resume() raises it
    else
      interrupt = config_interrupt_;
    // A driver that already holds the target has nothing to do and writes nothing: say so here.
    target_reached_told_ = pages == actual_pages_;
    if (target_reached_told_) tell = target_reached_;
  }
  if (interrupt) interrupt();
  if (tell) tell(pages, pages);
}

void BalloonDevice::set_target_reached_handler(TargetReached handler) {
  std::lock_guard lock(mutex_);
  target_reached_ = std::move(handler);
}

uint32_t BalloonDevice::target_pages() const {
  std::lock_guard lock(mutex_);
  return target_pages_;
}

uint32_t BalloonDevice::actual_pages() const {
  std::lock_guard lock(mutex_);
  return actual_pages_;
}

BalloonStats BalloonDevice::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

BalloonCounters BalloonDevice::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

bool BalloonDevice::request_stats() {
  std::lock_guard lock(mutex_);
  if (quiesced_ || !stats_queue_ || stats_queue_->broken() || !held_stats_head_) return false;
  stats_queue_->push_used(*held_stats_head_, 0);  // a head this queue gave: in range
  held_stats_head_.reset();
  if (queue_interrupt_ && stats_index_) queue_interrupt_(*stats_index_);
  return true;
}

}  // namespace kdom::devices::virtio
