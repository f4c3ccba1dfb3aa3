// BlockCounters: what a virtio-blk device has served, for the daemon's metrics: requests by
// kind, bytes, errors, and how long reads, writes and flushes took from being taken off the
// queue to their completion (a histogram). Updated by the queue workers with relaxed atomics
// (no lock on the I/O path), read at any time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace kdom::devices::virtio {

struct BlockCountersSnapshot {
  uint64_t reads = 0, writes = 0, flushes = 0, others = 0;  // others: discards, write zeroes, get id
  uint64_t read_bytes = 0, write_bytes = 0;
  uint64_t errors = 0;  // requests answered with an error status
  // Requests (reads, writes, flushes) whose latency was at most kLatencyBucketsUs[i]
  // microseconds and more than the bucket before; the last one counts the rest.
  std::array<uint64_t, 13> latency_buckets{};
  uint64_t latency_sum_ns = 0;
};

class BlockCounters {
 public:
  static constexpr std::array<uint64_t, 12> kLatencyBucketsUs = {10,    50,    100,   250,    500,    1000,
                                                                 2500,  5000,  10000, 50000, 100000, 1000000};
  enum class Kind { kRead, kWrite, kFlush, kOther };

  // One request done: its kind, bytes moved, whether it succeeded and (for reads, writes and
  // flushes) how long it took.
  void record(Kind kind, uint64_t bytes, bool ok, uint64_t latency_ns) {
    switch (kind) {
      case Kind::kRead:
        add(reads_, 1);
        add(read_bytes_, bytes);
        break;
      case Kind::kWrite:
        add(writes_, 1);
        add(write_bytes_, bytes);
        break;
      case Kind::kFlush:
        add(flushes_, 1);
        break;
      case Kind::kOther:
        add(others_, 1);
        break;
    }
    if (!ok) add(errors_, 1);
    if (kind == Kind::kOther) return;
    size_t bucket = 0;
    while (bucket < kLatencyBucketsUs.size() && latency_ns > kLatencyBucketsUs[bucket] * 1000) ++bucket;
    add(latency_buckets_[bucket], 1);
    add(latency_sum_ns_, latency_ns);
  }

  BlockCountersSnapshot snapshot() const {
    BlockCountersSnapshot out;
    out.reads = reads_.load(std::memory_order_relaxed);
    out.writes = writes_.load(std::memory_order_relaxed);
    out.flushes = flushes_.load(std::memory_order_relaxed);
    out.others = others_.load(std::memory_order_relaxed);
    out.read_bytes = read_bytes_.load(std::memory_order_relaxed);
    out.write_bytes = write_bytes_.load(std::memory_order_relaxed);
    out.errors = errors_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < out.latency_buckets.size(); ++i)
      out.latency_buckets[i] = latency_buckets_[i].load(std::memory_order_relaxed);
    out.latency_sum_ns = latency_sum_ns_.load(std::memory_order_relaxed);
    return out;
  }

 private:
  static void add(std::atomic<uint64_t>& counter, uint64_t value) { counter.fetch_add(value, std::memory_order_relaxed); }

  std::atomic<uint64_t> reads_{0}, writes_{0}, flushes_{0}, others_{0};
  std::atomic<uint64_t> read_bytes_{0}, write_bytes_{0}, errors_{0};
  std::array<std::atomic<uint64_t>, 13> latency_buckets_{};
  std::atomic<uint64_t> latency_sum_ns_{0};
};

}  // namespace kdom::devices::virtio
