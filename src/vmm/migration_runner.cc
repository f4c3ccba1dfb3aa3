// The migration thread: one migration, then its reply on the request's connection.
#include "vmm/migration_runner.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "base/error.h"
#include "base/log.h"

namespace kdom::vmm {

namespace {

// How long the reply may wait for a client that does not read (its socket buffer is full).
constexpr int kReplyTimeoutMs = 10'000;

// Sends `line` on the non-blocking socket `fd`; false when the client has gone or stalls.
bool send_reply(int fd, const std::string& line) {
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd writable{fd, POLLOUT, 0};
      if (::poll(&writable, 1, kReplyTimeoutMs) > 0) continue;
    }
    return false;
  }
  return true;
}

}  // namespace

MigrationRunner::MigrationRunner(Migrate migrate) : migrate_(std::move(migrate)) {}

MigrationRunner::~MigrationRunner() { close(); }

void MigrationRunner::start(UniqueFd& connection, UniqueFd& stream, nlohmann::json request) {
  std::lock_guard lock(mutex_);
  if (closed_) throw Error("the domain is stopping");
  if (running_) throw Error("a migration is running already (one at a time; migrate-cancel ends it)");
  // The thread of a migration that has ended: it only had its last lines to run.
  if (thread_.joinable()) thread_.join();
  running_ = true;
  thread_ = std::thread([this, connection = std::move(connection), stream = std::move(stream),
                         request = std::move(request)]() mutable {
    run(std::move(connection), std::move(stream), request);
  });
}

bool MigrationRunner::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

void MigrationRunner::close() {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    thread = std::move(thread_);
  }
  if (thread.joinable()) thread.join();
}

void MigrationRunner::run(UniqueFd connection, UniqueFd stream, const nlohmann::json& request) {
  nlohmann::json reply;
  try {
    reply = migrate_(request, stream.get());
  } catch (const std::exception& error) {
    reply = {{"ok", false}, {"error", std::string("migrate-send: ") + error.what()}};
  }
  // The stream first: the destination sees its end before the client hears the outcome.
  stream.reset();
  {
    // Before the reply: a client that asks for the next migration once it has it is taken
    // (start() then waits for this thread's last lines: a line sent on an empty socket).
    std::lock_guard lock(mutex_);
    running_ = false;
  }
  if (!send_reply(connection.get(), reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"))
    log_line("migrate-send: the client that asked for the migration did not take its reply");
}

}  // namespace kdom::vmm
