// ConsoleHub: the daemon's side of one domain's serial console. It stays connected to the VMM's
// console socket (reconnecting when the VMM is restarted or the daemon re-adopts it), keeps the
// recent output in a ring, appends everything to the domain's log file (rotated at a size
// limit), hands output to any number of followers, and passes attached users' keystrokes on.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "base/unique_fd.h"

namespace kdom::toolstack {

// The end of `output` that a terminal attaching to the console shows first (as much as fits a
// screen, not the whole boot log): its last `max_bytes`, from the start of a line when one
// begins in there.
std::string console_screen_tail(std::string_view output, size_t max_bytes);

class ConsoleHub {
 public:
  static constexpr size_t kRingBytes = 256 * 1024;
  static constexpr uint64_t kLogRotateBytes = 4 * 1024 * 1024;
  static constexpr size_t kFollowerQueueBytes = 1024 * 1024;

  // A reader of the output from now on. A reader that falls kFollowerQueueBytes behind is cut
  // off (next() returns false) so a stuck client never holds the console up.
  class Follower {
   public:
    // Waits for output; false when the hub closed or this follower was cut off.
    bool next(std::string& chunk);
    void close();

   private:
    friend class ConsoleHub;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::string> queue_;
    size_t queued_bytes_ = 0;
    bool closed_ = false;
  };

  ConsoleHub(std::string socket_path, std::string log_path);
  ~ConsoleHub();
  ConsoleHub(const ConsoleHub&) = delete;
  ConsoleHub& operator=(const ConsoleHub&) = delete;

  // The output kept in the ring (the last kRingBytes).
  std::string recent() const;
  std::shared_ptr<Follower> follow();
  void unfollow(const std::shared_ptr<Follower>& follower);
  // Sends bytes to the guest's serial input; false when the VMM is not connected.
  bool send_input(std::string_view bytes);
  // The domain was renamed: the log file follows the name.
  void move_log(const std::string& log_path);
  // The domain is gone: stops reading and ends every follower (also done by the destructor).
  void close();

 private:
  void run();
  void append(std::string_view bytes);
  void open_log();

  const std::string socket_path_;
  std::string log_path_;
  UniqueFd stop_fd_;
  mutable std::mutex mutex_;
  std::string ring_;
  UniqueFd log_;
  uint64_t log_bytes_ = 0;
  UniqueFd connection_;  // to the VMM's console socket, -1 while none
  std::set<std::shared_ptr<Follower>> followers_;
  std::thread thread_;
};

}  // namespace kdom::toolstack
