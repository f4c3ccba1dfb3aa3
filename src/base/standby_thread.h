// StandbyThread: a thread started ahead of the work it will do, waiting until it is given it.
// Starting a thread costs a clone and a stack; where work must begin inside a short window
// (a live migration's pause), the thread is made before the window and the work handed over
// in it, which costs one wake-up.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace kdom {

class StandbyThread {
 public:
  // Starts the thread, which waits for run() (or for the destructor, and then ends).
  StandbyThread();
  // Joins: after the work returns, or at once if none was given.
  ~StandbyThread();
  StandbyThread(const StandbyThread&) = delete;
  StandbyThread& operator=(const StandbyThread&) = delete;

  // Has the thread do `work` (once; a second call throws Error).
  void run(std::function<void()> work);
  // Waits for the work to return (or, with none given, lets the thread end). Idempotent.
  void join();
  // For a signal to the thread (pthread_kill); valid until join().
  std::thread::native_handle_type native_handle() { return thread_.native_handle(); }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::function<void()> work_;  // guarded by mutex_
  bool given_ = false;          // guarded by mutex_
  bool ending_ = false;         // guarded by mutex_: join() before run()
  std::thread thread_;
};

}  // namespace kdom
