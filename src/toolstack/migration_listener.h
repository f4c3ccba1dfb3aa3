// The destination's migration port (kdomd --migration-listen ADDRESS:PORT): accepts TCP
// connections and gives each, on a thread of its own, to the supervisor's receiving side,
// which checks its hello and token before anything else (migration_protocol.h).
#pragma once

#include <atomic>
#include <functional>
#include <thread>

#include "base/unique_fd.h"

namespace kdom::toolstack {

class MigrationListener {
 public:
  // At most this many migrations arrive at once; more connections are closed at once.
  static constexpr int kMaxIncoming = 16;

  // Serves `listener` (a listening TCP socket, owned from now on) until destroyed.
  MigrationListener(UniqueFd listener, std::function<void(UniqueFd connection)> on_connection);
  ~MigrationListener();
  MigrationListener(const MigrationListener&) = delete;
  MigrationListener& operator=(const MigrationListener&) = delete;

 private:
  void accept_loop();

  UniqueFd listener_;
  std::function<void(UniqueFd)> on_connection_;
  std::atomic<int> incoming_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace kdom::toolstack
