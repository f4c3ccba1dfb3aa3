// Live migration's sending side (Domain::migrate_send): a running domain's whole state written
// as the snapshot stream (docs/snapshot-format.md) to a socket while the guest keeps running,
// by iterative pre-copy. Round 1 sends all of RAM that holds pages; each later round sends the
// pages dirtied meanwhile, as KVM's dirty log (the guest's writes) and GuestMemory's (the
// VMM's own: used rings, device buffers, discarded pages) tell; once what is left would take
// no longer than the downtime budget at the bandwidth measured, or after the round limit, the
// domain is paused as a save pauses it and the last dirty pages, the vCPUs, the irqchip and
// the devices follow. A guest that dirties memory too fast for the rounds to shrink has its
// vCPUs throttled meanwhile (auto-converge: MigrationRate::throttle_after, VcpuThrottle),
// until the migration ends, however it ends. The domain is left paused: the caller (kdomd)
// destroys it once the destination has taken over, or unpauses it.
#include <linux/kvm.h>
#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <thread>

#include "base/elapsed.h"
#include "base/error.h"
#include "base/log.h"
#include "base/stream_socket.h"
#include "snapshot/memory_records.h"
#include "vmm/domain.h"
#include "vmm/migration_rate.h"
#include "vmm/vm_config_json.h"

namespace kdom::vmm {

namespace {

using Clock = std::chrono::steady_clock;
using DirtyPages = std::vector<std::vector<uint64_t>>;  // per RAM region, bitmap words

constexpr auto kProgressInterval = std::chrono::milliseconds(200);  // five events a second
constexpr auto kPaceSlice = std::chrono::milliseconds(20);          // a paced wait sees a cancel this soon
constexpr uint64_t kMiB = 1024 * 1024;
// Before each dirty-page take, the stream's socket is let drain to this much, for this long at
// most: what is still on its way when the guest stops adds to the pause (megabytes, in the
// kernels' buffers, where the destination reads slower than the source writes).
constexpr uint64_t kDrainedBytes = 128 * 1024;
constexpr auto kDrainWaitLimit = std::chrono::seconds(2);
constexpr auto kDrainPoll = std::chrono::milliseconds(1);

uint64_t dirty_bytes(const DirtyPages& dirty) {
  uint64_t pages = 0;
  for (const auto& region : dirty)
    for (uint64_t word : region) pages += static_cast<uint64_t>(std::popcount(word));
  return pages * snapshot::kPageSize;
}

void merge(DirtyPages& into, const DirtyPages& more) {
  for (size_t r = 0; r < into.size() && r < more.size(); ++r)
    for (size_t w = 0; w < into[r].size() && w < more[r].size(); ++w) into[r][w] |= more[r][w];
}

}  // namespace

bool Domain::migrating() {
  std::lock_guard lock(migration_mutex_);
  return migrating_;
}

bool Domain::migrate_cancel() {
  std::lock_guard lock(migration_mutex_);
  if (!migrating_ || migration_fd_ < 0) return false;  // none, or its stream is whole already
  migration_cancelled_ = true;
  // A write blocked on a peer that does not read returns at once (EPIPE); a stream that is no
  // socket (a file) is written without blocking, and the next record sees the flag.
  ::shutdown(migration_fd_, SHUT_RDWR);
  log_line("migration: cancel requested");
  return true;
}

void Domain::set_kvm_dirty_log(bool on) {
  uint32_t slot = 0;
  for (const auto& region : memory_->regions())
    vm_->set_memory_region(slot++, region.range.start, region.range.size, region.host,
                           on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
}

DirtyPages Domain::take_dirty_pages() {
  DirtyPages dirty;
  // With the ring on, KVM refuses KVM_GET_DIRTY_LOG: its rings, gathered into the same bitmaps.
  DirtyPages from_rings = dirty_rings_ ? dirty_rings_->take() : DirtyPages{};
  const auto& regions = memory_->regions();
  for (size_t i = 0; i < regions.size(); ++i) {
    auto pages = dirty_rings_ ? std::move(from_rings.at(i))
                              : vm_->dirty_log(static_cast<uint32_t>(i), regions[i].range.size / snapshot::kPageSize);
    const auto own = memory_->take_dirty(i);
    for (size_t w = 0; w < pages.size() && w < own.size(); ++w) pages[w] |= own[w];
    dirty.push_back(std::move(pages));
  }
  return dirty;
}

void Domain::stop_dirty_logs_logged() {
  try {
    stop_dirty_logs();
  } catch (const std::exception& error) {
    log_line(std::string("migration: cannot stop the dirty logs: ") + error.what());
  }
}

void Domain::stop_dirty_logs_after_migration() {
  std::lock_guard lock(migration_mutex_);
  if (!migrating_ && dirty_logging_) stop_dirty_logs_logged();
}

void Domain::stop_dirty_logs() {
  if (!dirty_logging_) return;
  dirty_logging_ = false;
  memory_->stop_dirty_log();
  set_kvm_dirty_log(false);
  if (dirty_rings_) {
    dirty_rings_->discard();  // left empty while no migration runs
    log_line("migration: " + std::to_string(dirty_rings_->full_harvests()) +
             " vCPU exits on a full dirty ring since the domain started");
  }
}

nlohmann::json Domain::migrate_send(int stream_fd, const MigrationOptions& options) {
  {
    std::lock_guard lock(migration_mutex_);
    if (migrating_) throw Error("a migration is running already");
    if (!running_) throw Error("the domain is still starting");
    if (stopping_) throw Error("the domain is stopping");
    migrating_ = true;
    migration_fd_ = stream_fd;
    migration_cancelled_ = false;
  }
  log_line("migration: starting (downtime " + std::to_string(options.downtime_ms) + " ms, at most " +
           std::to_string(options.max_rounds) + " pre-copy rounds" +
           (options.max_bandwidth_mib ? ", " + std::to_string(options.max_bandwidth_mib) + " MiB/s" : std::string()) +
           ", KVM's " + dirty_log_kind() + ")");
  bool paused_here = false;          // the stop-and-copy paused a running domain
  bool disks_released_here = false;  // ...and let go of its disks (release_disks)
  auto end = [&](bool unpause, bool sent_whole) {
    // The guest at full speed again, whatever the outcome (never throws at 0).
    throttle_->set_percent(0);
    // A domain whose stream went whole only waits to be destroyed: the memory slots' updates
    // would take CPU from the destination just as it loads the guest. If it runs here again
    // after all (its destination never said it runs), unpause stops the logs.
    if (!sent_whole) stop_dirty_logs_logged();
    try {
      device_events_.call([&] {
        migration_holds_pause_ = false;
        // A failure after the disks were let go: taken back first (unpause refuses without
        // them). If another process took one meanwhile, the domain stays paused.
        if (unpause && disks_released_here) set_disk_locks(true);
        if (unpause) unpause_vcpus();
      });
    } catch (const std::exception& error) {
      log_line(std::string("migration: cannot run the domain again: ") + error.what());
    }
    std::lock_guard lock(migration_mutex_);
    migrating_ = false;
    migration_fd_ = -1;
  };
  try {
    nlohmann::json reply = send_migration_stream(stream_fd, options, paused_here, disks_released_here);
    end(false, true);
    return reply;
  } catch (const std::exception& error) {
    const bool stopping = stopping_;
    // A stopping domain cancels its migration too (end_migration): that is the reason to give.
    const std::string why = stopping ? "the domain is stopping" : migration_cancelled_ ? "cancelled" : error.what();
    end(paused_here && !stopping, false);
    log_line("migration failed: " + why);
    if (stopping) throw Error(why);
    throw Error(why + (!status().paused ? "; the domain runs on" : "; the domain stays paused"));
  }
}

nlohmann::json Domain::send_migration_stream(int stream_fd, const MigrationOptions& options, bool& paused_here,
                                             bool& disks_released_here) {
  const auto started = Clock::now();
  MigrationRate rate(options.downtime_ms, options.max_rounds, options.max_bandwidth_mib * kMiB);
  const uint64_t total_bytes = memory_->total_size();
  snapshot::StreamWriter writer(stream_fd, "migration stream");
  VmConfig sent_config;
  device_events_.call([&] { sent_config = current_config(); });
  write_head_records(writer, sent_config, options.toolstack);

  // Both logs before round 1 reads a page: a page written after it was read is dirty. (Still on
  // after a migration whose domain was never destroyed: stopped first, so round 1 starts clean.)
  stop_dirty_logs();
  dirty_logging_ = true;
  memory_->start_dirty_log();
  if (dirty_rings_) dirty_rings_->discard();  // what a past migration left: round 1 sends all
  set_kvm_dirty_log(true);

  uint32_t round = 1;
  const char* phase = "precopy";
  double dirty_bytes_per_s = 0;
  uint32_t throttle = 0, highest_throttle = 0;  // auto-converge's percent: now, and the most
  Clock::time_point round_start, last_event;
  uint64_t round_base = 0;  // the stream's bytes before the round
  auto publish_progress = [&](uint64_t remaining, bool force) {
    const auto now = Clock::now();
    if (!force && now - last_event < kProgressInterval) return;
    last_event = now;
    publish_event("migrate-progress", {{"round", round},
                                       {"phase", phase},
                                       {"sent_bytes", writer.bytes_written()},
                                       {"total_bytes", total_bytes},
                                       {"remaining_bytes", remaining},
                                       {"rate_bytes_per_s", static_cast<uint64_t>(rate.bytes_per_s())},
                                       {"dirty_bytes_per_s", static_cast<uint64_t>(dirty_bytes_per_s)},
                                       {"expected_downtime_ms", rate.expected_ms(remaining)},
                                       {"throttle_percent", throttle}});
  };
  auto check_abort = [&] {
    if (migration_cancelled_) throw Error("cancelled");
    if (stopping_) throw Error("the domain is stopping");
  };
  // Between records: a cancel or a stop ends the migration, a bandwidth limit waits.
  auto between_records = [&](uint64_t remaining, bool paced) {
    check_abort();
    for (auto wait = rate.pace(writer.bytes_written() - round_base, seconds_since(round_start));
         paced && wait.count() > 0; wait = rate.pace(writer.bytes_written() - round_base, seconds_since(round_start))) {
      std::this_thread::sleep_for(std::min<Clock::duration>(wait, kPaceSlice));
      check_abort();
    }
    publish_progress(remaining, false);
  };
  auto begin_round = [&](uint64_t remaining) {
    round_start = Clock::now();
    round_base = writer.bytes_written();
    publish_progress(remaining, true);
  };
  snapshot::MemoryCounts counts;
  // A pre-copy round's (paced: the guest runs) or the stop-and-copy's.
  auto send_dirty = [&](const DirtyPages& dirty, bool paced) {
    const auto guest = paced ? snapshot::GuestActivity::kRunning : snapshot::GuestActivity::kStopped;
    uint64_t left = dirty_bytes(dirty);
    for (size_t region = 0; region < dirty.size(); ++region) {
      uint64_t done_before = 0;
      counts += snapshot::write_dirty_memory(writer, *memory_, region, dirty[region], guest,
                                             [&](uint64_t done, uint64_t) {
                                               left -= done - done_before;
                                               done_before = done;
                                               between_records(left, paced);
                                             });
    }
  };
  // Dirty pages since the last take, and the rate they came at.
  Clock::time_point last_take = Clock::now();
  auto take_dirty = [&] {
    DirtyPages dirty = take_dirty_pages();
    const double seconds = seconds_since(last_take);
    last_take = Clock::now();
    if (seconds > 0) dirty_bytes_per_s = static_cast<double>(dirty_bytes(dirty)) / seconds;
    return dirty;
  };
  // A pre-copy round ends once the destination has (nearly) all of it: the rate measured is
  // the rate that arrives, and the stop-and-copy does not wait behind a round still on its way.
  // Then its rate, and the pages dirtied meanwhile.
  auto end_round = [&] {
    for (const auto limit = Clock::now() + kDrainWaitLimit; Clock::now() < limit;) {
      const auto queued = bytes_on_their_way(stream_fd);
      if (!queued || *queued <= kDrainedBytes) break;
      std::this_thread::sleep_for(kDrainPoll);
      check_abort();
    }
    rate.round_sent(writer.bytes_written() - round_base, seconds_since(round_start));
    return take_dirty();
  };

  // Round 1: all of RAM that holds pages, as a save writes it (the destination's RAM is zero
  // where nothing is sent).
  begin_round(total_bytes);
  counts += snapshot::write_memory(
      writer, *memory_, [&](uint64_t done, uint64_t total) { between_records(total - done, true); },
      snapshot::GuestActivity::kRunning);
  DirtyPages dirty = end_round();
  auto throttle_to = [&](uint32_t percent) {
    if (percent == throttle) return;
    throttle_->set_percent(percent);
    throttle = percent;
    highest_throttle = std::max(highest_throttle, percent);
    if (percent == 0) return;
    char line[160];
    std::snprintf(line, sizeof(line),
                  "migration: round %u: the guest dirties %.1f MiB/s, %.1f MiB/s are sent: its vCPUs are throttled to %u%%",
                  round, dirty_bytes_per_s / kMiB, rate.bytes_per_s() / kMiB, percent);
    log_line(line);
  };
  while (!rate.converged(dirty_bytes(dirty), round)) {
    if (options.auto_converge)
      throttle_to(MigrationRate::throttle_after(round, throttle, dirty_bytes_per_s, rate.bytes_per_s()));
    ++round;
    begin_round(dirty_bytes(dirty));
    send_dirty(dirty, true);
    dirty = end_round();
  }

  // Stop-and-copy: paused as a save pauses (the vCPUs parked, the devices quiesced), in the
  // device loop's thread, whose the devices are.
  ++round;
  phase = "stop-and-copy";
  check_abort();
  const auto pause_started = Clock::now();
  DeviceStates states;
  VmConfig paused_config;
  Clock::time_point parked;
  device_events_.call([&] {
    const bool was_paused = status().paused;
    pause_vcpus(/*announce=*/false);
    parked = Clock::now();
    paused_here = !was_paused;
    migration_holds_pause_ = true;
    states = save_device_states();
    paused_config = current_config();
    // Quiesced: nothing writes the images now. Let go of them while the last pages go, so the
    // destination can take them as soon as the stream ends.
    if (options.release_disks) {
      set_disk_locks(false);
      disks_released_here = true;
    }
  });
  const double pause_ms = seconds_since(pause_started) * 1000.0;
  const double park_ms = ms_between(pause_started, parked);
  // The vCPUs are parked: nothing left to slow down.
  throttle_to(0);
  // The config record went first; a device the guest ejected since would be built at the
  // destination with no state for it.
  if (to_json(paused_config) != to_json(sent_config))
    throw Error("a device left the domain during the migration (the guest ejected it); migrate again");
  merge(dirty, take_dirty_pages());  // not a measure of the guest's rate: it stood still
  const uint64_t last_bytes = dirty_bytes(dirty);
  const auto last_pages_started = Clock::now();
  begin_round(last_bytes);
  send_dirty(dirty, false);
  const auto state_started = Clock::now();
  write_state_records(writer, states);
  const double downtime_ms = seconds_since(pause_started) * 1000.0;
  // Where the pause went: parking the vCPUs and saving the devices' state (and letting go of
  // the disks), the dirty logs' last take, the last pages, the state records.
  const double dirty_log_ms = ms_between(pause_started, last_pages_started) - pause_ms;
  const double last_pages_ms = ms_between(last_pages_started, state_started);
  const double last_mib = static_cast<double>(last_bytes) / kMiB;
  const double state_ms = seconds_since(state_started) * 1000.0;
  const nlohmann::json parts = {{"pause_ms", pause_ms},         {"park_ms", park_ms},
                                {"dirty_log_ms", dirty_log_ms}, {"last_pages_ms", last_pages_ms},
                                {"last_mib", last_mib},         {"state_ms", state_ms}};
  char split[240];
  std::snprintf(split, sizeof(split),
                "pause and device state %.1f ms (the vCPUs parked in %.1f), last dirty log %.1f ms, %.1f MiB of "
                "last pages %.1f ms, state records %.1f ms",
                pause_ms, park_ms, dirty_log_ms, last_mib, last_pages_ms, state_ms);
  {
    // The destination has the whole stream: from here on nothing may fail the migration, and
    // a cancel comes too late (the dirty logs stop in migrate_send's end, errors only logged).
    std::lock_guard lock(migration_mutex_);
    migration_fd_ = -1;
  }

  const double seconds = seconds_since(started);
  const uint64_t zero_pages = counts.zero_pages_skipped + counts.zero_pages_sent;
  log_line("migration: sent " + std::to_string(writer.bytes_written()) + " bytes in " + std::to_string(round) +
           " rounds, " + std::to_string(counts.pages_written) + " pages (" + std::to_string(zero_pages) +
           " zero), " + std::to_string(seconds) + " s, downtime " + std::to_string(downtime_ms) + " ms (" + split +
           "; KVM's " + dirty_log_kind() + ")" +
           (highest_throttle ? ", vCPUs throttled up to " + std::to_string(highest_throttle) + "%" : std::string()) +
           "; the domain stays paused");
  return {{"rounds", round},
          {"sent_bytes", writer.bytes_written()},
          {"pages", counts.pages_written},
          {"zero_pages", zero_pages},
          {"seconds", seconds},
          {"downtime_ms", downtime_ms},
          {"downtime_parts", parts},
          {"paused_at_ns", monotonic_ns(pause_started)},
          {"dirty_log", dirty_log_kind()},
          {"throttle_percent", highest_throttle}};
}

}  // namespace kdom::vmm
