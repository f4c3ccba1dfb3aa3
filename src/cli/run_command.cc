// `kdom run`: parse the options, build the domain, run it until it stops, and tell a
// supervisor about it (--ready-fd when it is up, --exit-file when it has stopped).
#include "cli/run_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>

#include "base/error.h"
#include "base/log.h"
#include "base/stream_socket.h"
#include "cli/run_options.h"
#include "snapshot/snapshot_source.h"
#include "vmm/domain.h"
#include "vmm/vm_config_json.h"

namespace kdom::cli {

namespace {

// The incoming migration's receive buffer (the kernel holds twice this): enough for a LAN's
// bandwidth-delay product, little to read in the guest's pause (docs/migration.md).
constexpr int kIncomingReceiveBuffer = 256 * 1024;

// Writes "ready\n" to `fd` and closes it. A supervisor that has gone away (EPIPE) does not
// stop the domain.
void announce_ready(int fd) {
  static constexpr char kReady[] = "ready\n";
  ssize_t n;
  while ((n = ::write(fd, kReady, sizeof(kReady) - 1)) < 0 && errno == EINTR) {
  }
  if (n < 0) log_line(std::string("--ready-fd ") + std::to_string(fd) + ": " + std::strerror(errno));
  ::close(fd);
}

void write_exit_file_or_log(const std::string& path, const vmm::DomainExit& exit) {
  if (path.empty()) return;
  try {
    vmm::write_exit_file(path, exit);
  } catch (const std::exception& error) {
    log_line(error.what());
  }
}

vmm::VmConfig saved_config(const snapshot::SnapshotSource& source) {
  vmm::VmConfig config;
  try {
    config = vmm::vm_config_from_json(source.config());
  } catch (const std::exception& error) {
    throw Error("snapshot '" + source.name() + "': its config record: " + error.what());
  }
  // An inherited fd number means nothing to this process.
  for (const auto& net : config.nets)
    if (net.fd >= 0)
      throw Error("snapshot '" + source.name() + "': NIC '" + net.id +
                  "' was on a TAP fd its kdom inherited; restore it with --config naming a TAP");
  return config;
}

// The fd of --incoming-fd, checked (open, for reading) and owned from here on.
UniqueFd adopt_incoming_fd(int fd) {
  const std::string what = "--incoming-fd " + std::to_string(fd);
  const int fd_flags = ::fcntl(fd, F_GETFD);
  if (fd_flags < 0) throw Error(what + " is not an open file descriptor");
  const int status_flags = ::fcntl(fd, F_GETFL);
  if (status_flags >= 0 && (status_flags & O_ACCMODE) == O_WRONLY) throw Error(what + " is not open for reading");
  ::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC);
  // A migration's socket holds little for us: bytes the kernel holds here when the source's
  // guest stops would be read within its pause, and at most this much is (a pipe: no cap).
  cap_receive_buffer(fd, kIncomingReceiveBuffer);
  return UniqueFd(fd);
}

}  // namespace

int run_command(const std::vector<std::string>& args, const std::string& guest_dir) {
  // First: a SIGTERM while the domain is built then waits for Domain::run(), which ends
  // cleanly (sockets removed) instead of the process dying with its socket files left behind.
  vmm::block_stop_signals();
  auto parsed = parse_run_options(args, {guest_dir});
  if (parsed.outcome == ParseOutcome::kHelpShown) {
    std::cout << parsed.help;
    return 0;
  }
  if (parsed.ready_fd) {
    const int flags = ::fcntl(*parsed.ready_fd, F_GETFD);
    if (flags < 0) throw Error("--ready-fd " + std::to_string(*parsed.ready_fd) + " is not an open file descriptor");
    ::fcntl(*parsed.ready_fd, F_SETFD, flags | FD_CLOEXEC);
  }
  UniqueFd incoming;
  if (parsed.incoming_fd) incoming = adopt_incoming_fd(*parsed.incoming_fd);
  std::unique_ptr<vmm::Domain> domain;
  try {
    if (parsed.restore || parsed.incoming_fd) {
      auto source = parsed.restore ? std::make_unique<snapshot::SnapshotSource>(*parsed.restore)
                                   : std::make_unique<snapshot::SnapshotSource>(
                                         std::move(incoming),
                                         "the incoming migration (fd " + std::to_string(*parsed.incoming_fd) + ")");
      vmm::VmConfig config = parsed.config_given ? parsed.config : saved_config(*source);
      if (parsed.control_override) config.control_path = *parsed.control_override;
      if (parsed.console_override) config.console = *parsed.console_override;
      domain = std::make_unique<vmm::Domain>(config, *source, parsed.paused,
                                             parsed.restore ? vmm::Domain::RestoreSource::kSavedFile
                                                            : vmm::Domain::RestoreSource::kIncomingMigration);
      // The stream has been read to its End record and no further; its fd closes here, before
      // --ready-fd says so: the daemons go on talking on the connection, without this process.
      source.reset();
    } else {
      domain = std::make_unique<vmm::Domain>(parsed.config);
    }
  } catch (const std::exception& error) {
    write_exit_file_or_log(parsed.exit_file, {vmm::DomainExitKind::kStartFailure, 0, error.what()});
    throw;
  }
  std::function<void()> on_ready;
  if (parsed.ready_fd) on_ready = [fd = *parsed.ready_fd] { announce_ready(fd); };
  vmm::DomainExit exit = domain->run(on_ready);
  // Logged while the control socket still exists: `kdom shutdown --wait` returns when it goes,
  // and whoever reads our stderr then finds why we stopped.
  log_line(exit.message);
  domain.reset();  // sockets removed, terminal restored, before the exit file says it has ended
  write_exit_file_or_log(parsed.exit_file, exit);
  return vmm::exit_status(exit);
}

}  // namespace kdom::cli
