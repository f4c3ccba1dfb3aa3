// ControlRequests: what a running domain does for a control request, apart from how the
// request arrived. Today requests come as JSON lines over the control socket (ControlSocket);
// the daemon's HTTP API (PATCH /balloon, GET /balloon/statistics in Firecracker's terms) is to
// call the same handler. A request is a JSON object with an "op"; the reply is a JSON object
// with "ok" and either the results or "error" (one line naming the problem). Bad requests
// never throw: they get an error reply.
//
//   {"op":"balloon-set","target_mib":N}  -> {"ok":true}
//   {"op":"balloon-stats"}               -> {"ok":true,"target_mib":..,"actual_mib":..,
//                                            "stats_age_s":..,"stats":{"free_memory":..,...},
//                                            "pages_inflated":..,...}
//   {"op":"power-button"}                -> {"ok":true}: the guest's ACPI power button was
//                                            pressed (what follows is the guest's choice)
//   {"op":"pause"}                       -> {"ok":true} once every vCPU is parked
//   {"op":"unpause"}                     -> {"ok":true}: the vCPUs run again
//   {"op":"status"}                      -> {"ok":true,"pid":..,"state":"running"|"paused",
//                                            "memory_mib":..,"vcpus":..,"uptime_s":..,
//                                            "disks_locked":bool}
//   {"op":"reboot"}                      -> {"ok":true}: the domain stops as if the guest had
//                                            asked for a reboot (its supervisor restarts it)
//   {"op":"stats"}                       -> {"ok":true,"vcpus":[{"vcpu":..,"tid":..,"exits":{..}}],
//                                            "disks":[..],"nets":[..],"balloon":{..}}: counters
//   {"op":"disk-attach","disk":{..}}     -> {"ok":true,"id":..,"slot":..}: hot-plug (DeviceHotplug,
//   {"op":"net-attach","net":{..}}          device_hotplug.h, has the details)
//   {"op":"device-detach","id":..[,"force":true]} -> {"ok":true,"id":..,"state":"detaching"|"detached"}
//   {"op":"devices"}                     -> {"ok":true,"devices":[{"id":..,"kind":..,"slot":..,"state":..}]}
//   {"op":"save","path":..[,"then":"running"|"paused"|"stop"][,"toolstack":{..}]}
//                                        -> {"ok":true,"bytes":..,"pages":..,"zero_pages":..,
//                                            "seconds":..,"downtime_s":..}: the whole domain
//                                            written to the file (docs/snapshot-format.md),
//                                            then running again (default), left paused, or
//                                            stopped (kdom run exits 0, reason "saved"); a
//                                            failure leaves the domain as it was, no file
//   {"op":"disk-locks","hold":false}     -> {"ok":true,"disks":N}: a live migration's hand-over:
//                                            every disk flushed (fdatasync), then every image
//                                            lock let go; only while paused; unpause (and
//                                            disk-attach) is refused until hold:true
//   {"op":"disk-locks","hold":true}      -> {"ok":true,"disks":N}: every disk's image lock taken,
//                                            all or nothing (an error names the disk another
//                                            process holds). An incoming domain (kdom run
//                                            --incoming-fd) starts without them
//   {"op":"announce"}                    -> {"ok":true,"nics":N}: every NIC sends a RARP
//                                            broadcast with its MAC out of its TAP, so switches
//                                            learn where the domain moved
//   {"op":"events"}                      -> {"ok":true}, then the connection carries one event
//                                            line after another, {"event":..,"time":unix s,..}:
//                                            served by ControlSocket and EventStream, not here
//                                            (handle() answers it with an error reply)
//   {"op":"migrate-send"[,"downtime_ms":50][,"max_rounds":30][,"max_bandwidth_mib":0]
//    [,"auto_converge":true][,"release_disks":false][,"toolstack":{..}]}, sent with the stream's fd
//    attached (SCM_RIGHTS, on the sendmsg that carries the line's first byte); release_disks:
//    the disks' locks are let go at the last round's pause (MigrationOptions says more)
//                                        -> {"ok":true,"rounds":..,"sent_bytes":..,"pages":..,
//                                            "zero_pages":..,"seconds":..,"downtime_ms":..,
//                                            "downtime_parts":{..},"dirty_log":..,
//                                            "throttle_percent":..}:
//                                            live migration (Domain::migrate_send): the whole
//                                            domain written to the fd as a snapshot stream while
//                                            it runs, iterative pre-copy, then stop-and-copy;
//                                            the domain is left PAUSED (the caller destroys it
//                                            or unpauses it). Auto-converge (unless false): a
//                                            guest dirtying at least half what the link carries
//                                            has its vCPUs throttled from round 2 on, 20% of
//                                            each 10 ms asleep, 10 points more each round that
//                                            ends so, 99% at most (of a longer period: 1 ms to
//                                            run), until the migration ends
//                                            (throttle_percent: the most it used, 0 for none).
//                                            A failure or a cancel: an error saying why, the
//                                            domain as it was (running again, at full speed).
//                                            ControlSocket hands the connection to a migration
//                                            thread (MigrationRunner) and the reply comes when
//                                            the migration ends; the connection is then closed.
//                                            One migration at a time. migrate_send() serves it.
//   {"op":"migrate-cancel"}              -> {"ok":true,"cancelled":true|false}: the migration
//                                            running is ended (its stream shut down, so a
//                                            blocked write returns) and its reply says
//                                            "cancelled"; false when none runs (or it has
//                                            written its whole stream: too late)
//
// The events (EventStream; the domain publishes them, see Domain::publish_event):
//   {"event":"paused"}, {"event":"unpaused"}   the vCPUs were parked / run again
//   {"event":"balloon-target-reached","actual_mib":..,"target_mib":..,"actual_pages":..}
//                                              the guest's balloon holds its target (sizes of
//                                              the balloon, as balloon-stats gives them)
//   {"event":"device-attached","id":..,"kind":"disk"|"net","slot":..}
//   {"event":"device-detached","id":..,"kind":..,"slot":..,"by":"request"|"guest"|"force"}
//                                              a hot-plugged change: "request" when the guest let
//                                              go as asked, "guest" when it ejected on its own
//   {"event":"save-progress","done_bytes":..,"total_bytes":..}
//                                              a save is that far through guest RAM (a few
//                                              times a second, and once when it is through)
//   {"event":"migrate-progress","round":..,"phase":"precopy"|"stop-and-copy","sent_bytes":..,
//    "total_bytes":..,"remaining_bytes":..,"rate_bytes_per_s":..,"dirty_bytes_per_s":..,
//    "expected_downtime_ms":..,"throttle_percent":..}
//                                              a migration's progress: once as each round
//                                              starts, and at most five a second within one
//                                              (total: the RAM's size; remaining: what the
//                                              round has still to send, dirty pages after the
//                                              first; rate: the last round's measured one;
//                                              throttle: auto-converge's now, 0 for none)
//   {"event":"stopping","reason":..,"code":..,"message":..,"exit_status":..}
//                                              the domain is stopping; the fields are the exit
//                                              file's (reason: poweroff, reboot, crash (a guest
//                                              panic, pvpanic), debug-exit, vcpu-failure, signal)
//   {"event":"overflow","message":..}          the subscriber fell behind: its last line
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "devices/virtio/balloon.h"

namespace kdom::vmm {

// What `status` reports besides the pid and memory size.
struct DomainStatus {
  bool paused = false;
  uint32_t vcpus = 0;
  double uptime_s = 0;  // since the vCPUs started (0 before)
  bool disks_locked = true;  // false while a live migration hands the disks over
};

// A live migration's limits (migrate-send).
struct MigrationOptions {
  // Pre-copy stops once what is left to send takes no longer than this at the measured
  // bandwidth (the guest stands still that long, roughly)...
  uint64_t downtime_ms = 50;
  // ...or after this many pre-copy rounds (the first, all of RAM, included); then the
  // stop-and-copy round.
  uint32_t max_rounds = 30;
  // MiB/s the pre-copy rounds may send at most; 0: no limit. The stop-and-copy round is not
  // paced (the guest stands still meanwhile).
  uint64_t max_bandwidth_mib = 0;
  // Auto-converge: a guest that dirties memory too fast for the rounds to shrink has its
  // vCPUs throttled, harder each round (MigrationRate::throttle_after), until the migration
  // ends.
  bool auto_converge = true;
  // Let go of the disks' image locks (flushed) as soon as the domain is paused for the last
  // round, so the destination may take them the moment the stream ends: no round trip
  // between the daemons while the guest stands still. A migration that fails afterwards takes
  // them back before the domain runs again (if another process holds one: it stays paused).
  bool release_disks = false;
  nlohmann::json toolstack;  // for the config record, as save's
};

// What the domain does for the requests that act on it. Each may be empty (the request then
// gets an error reply); the void ones throw Error (one line) when they cannot act, and the
// reply carries that line.
struct DomainActions {
  // Presses the guest's power button; false while the domain is still being built.
  std::function<bool()> press_power_button;
  std::function<void()> pause;    // returns once every vCPU is parked; no-op when paused
  std::function<void()> unpause;  // no-op when running
  std::function<DomainStatus()> status;
  std::function<void()> reboot;   // asks the domain to stop with DomainExitKind::kReboot
  std::function<nlohmann::json()> stats;  // the `stats` reply's fields
  // The device ops (disk-attach, net-attach, device-detach, devices): the whole reply.
  std::function<nlohmann::json(const std::string& op, const nlohmann::json& request)> devices;
  // Saves the whole domain to a file (`path`), then leaves it running or paused (`then`);
  // returns the reply's figures. Throws Error with the domain as it was.
  // `toolstack`: what the caller (kdomd) keeps in the snapshot's config record for its own
  // restore (its domain config), or null.
  std::function<nlohmann::json(const std::string& path, const std::string& then, const nlohmann::json& toolstack)>
      save;
  // The disks' image locks taken (`hold`) or flushed and let go; returns the number of disks.
  std::function<size_t(bool hold)> disk_locks;
  // Every NIC's RARP announcement; returns the number of NICs.
  std::function<size_t()> announce;
  // Live migration to `stream_fd` (which stays the caller's), blocking until it ends: the
  // reply's figures; throws Error saying why it failed (the domain as it was).
  std::function<nlohmann::json(int stream_fd, const MigrationOptions& options)> migrate_send;
  // Ends the migration running, if any (true), promptly: a blocked write returns.
  std::function<bool()> migrate_cancel;
};

class ControlRequests {
 public:
  using PowerButtonPress = std::function<bool()>;

  // `balloon` may be null (the domain has none): balloon requests then get an error reply.
  ControlRequests(std::shared_ptr<devices::virtio::BalloonDevice> balloon, uint64_t memory_mib,
                  PowerButtonPress press_power_button);
  ControlRequests(std::shared_ptr<devices::virtio::BalloonDevice> balloon, uint64_t memory_mib,
                  DomainActions actions);

  nlohmann::json handle(const nlohmann::json& request);
  // One request line (JSON text) to one reply line (JSON text, no newline).
  std::string handle_line(const std::string& line);
  // migrate-send, whose stream fd came with the request (`stream_fd`, which stays the
  // caller's): checks the request, then runs the migration, blocking (a migration thread, not
  // the event loop's); the reply. handle() refuses the op: it has no fd.
  nlohmann::json migrate_send(const nlohmann::json& request, int stream_fd);

 private:
  nlohmann::json balloon_set(const nlohmann::json& request);
  nlohmann::json balloon_stats();
  nlohmann::json status();

  std::shared_ptr<devices::virtio::BalloonDevice> balloon_;
  uint64_t memory_mib_;
  DomainActions actions_;
};

}  // namespace kdom::vmm
