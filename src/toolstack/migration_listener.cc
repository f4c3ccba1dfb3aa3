// The migration port's accept loop.
#include "toolstack/migration_listener.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "toolstack/migration_protocol.h"

namespace kdom::toolstack {

MigrationListener::MigrationListener(UniqueFd listener, std::function<void(UniqueFd)> on_connection)
    : listener_(std::move(listener)), on_connection_(std::move(on_connection)) {
  thread_ = std::thread([this] { accept_loop(); });
}

MigrationListener::~MigrationListener() {
  stopping_ = true;
  ::shutdown(listener_.get(), SHUT_RDWR);  // wakes the accept
  thread_.join();
}

void MigrationListener::accept_loop() {
  while (!stopping_) {
    UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!connection.valid()) {
      if (stopping_) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      log_line(std::string("migration port: accept: ") + std::strerror(errno));
      ::poll(nullptr, 0, 100);  // out of descriptors or memory: not a busy loop
      continue;
    }
    if (incoming_.fetch_add(1) >= kMaxIncoming) {
      incoming_.fetch_sub(1);
      log_line("migration port: a connection refused: " + std::to_string(kMaxIncoming) + " migrations arrive already");
      continue;  // closed here
    }
    tune_migration_socket(connection.get());
    std::thread([this, fd = std::move(connection)]() mutable {
      on_connection_(std::move(fd));
      incoming_.fetch_sub(1);
    }).detach();
  }
}

}  // namespace kdom::toolstack
