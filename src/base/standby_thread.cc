// StandbyThread: a thread started ahead, waiting for its work (see the header).
#include "base/standby_thread.h"

#include "base/error.h"

namespace kdom {

StandbyThread::StandbyThread() {
  thread_ = std::thread([this] {
    std::function<void()> work;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return given_ || ending_; });
      if (!given_) return;
      work = std::move(work_);
    }
    work();
  });
}

StandbyThread::~StandbyThread() { join(); }

void StandbyThread::run(std::function<void()> work) {
  {
    std::lock_guard lock(mutex_);
    if (given_ || ending_) throw Error("a standby thread is given work twice, or after it was joined");
    work_ = std::move(work);
    given_ = true;
  }
  cv_.notify_one();
}

void StandbyThread::join() {
  {
    std::lock_guard lock(mutex_);
    ending_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

}  // namespace kdom
