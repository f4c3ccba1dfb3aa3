// MigrationRunner: the control socket's migrate-send, run off the device event loop. A live
// migration takes seconds to minutes, and the loop's thread serves the devices and the control
// socket meanwhile (a migrate-cancel among them), so the request's connection and the stream's
// fd are handed to a thread of their own, which runs the migration, writes the reply line on
// the connection and closes both. One migration at a time.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"

namespace kdom::vmm {

class MigrationRunner {
 public:
  // Runs one migration, blocking: the request, the stream's fd (the runner's; it is closed
  // afterwards). Returns the reply, ok or not (ControlRequests::migrate_send).
  using Migrate = std::function<nlohmann::json(const nlohmann::json& request, int stream_fd)>;

  explicit MigrationRunner(Migrate migrate);
  // Waits for a migration still running (its owner cancels it first).
  ~MigrationRunner();
  MigrationRunner(const MigrationRunner&) = delete;
  MigrationRunner& operator=(const MigrationRunner&) = delete;

  // Takes `connection` and `stream` and runs the migration in its thread. Throws Error, both
  // left to the caller, while one runs or after close().
  void start(UniqueFd& connection, UniqueFd& stream, nlohmann::json request);
  bool running() const;
  // Refuses migrations from now on and waits for the one running, if any, to end.
  void close();

 private:
  void run(UniqueFd connection, UniqueFd stream, const nlohmann::json& request);

  Migrate migrate_;
  mutable std::mutex mutex_;
  std::thread thread_;    // under mutex_
  bool running_ = false;  // under mutex_
  bool closed_ = false;   // under mutex_
};

}  // namespace kdom::vmm
