// Console back ends.
#include "vmm/console.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/eventfd.h"
#include "base/log.h"
#include "vmm/control_socket.h"

namespace kdom::vmm {

SocketConsole::SocketConsole(const std::string& path, EventLoop& events, InputHandler on_input)
    : path_(path), events_(events), on_input_(std::move(on_input)) {
  wakeup_.reset(check_syscall(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
  listener_ = listen_on_unix_socket(path, "console socket");
  try {
    events_.add(listener_.get(), [this] { accept_client(); });
    events_.add(wakeup_.get(), [this] { on_wakeup(); });
  } catch (...) {
    events_.remove(listener_.get());
    ::unlink(path_.c_str());
    throw;
  }
}

SocketConsole::~SocketConsole() {
  close_client();
  events_.remove(wakeup_.get());
  events_.remove(listener_.get());
  ::unlink(path_.c_str());
}

void SocketConsole::write(std::span<const uint8_t> bytes) {
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    if (bytes.size() >= kMaxBufferedOutput) {
      output_.clear();
      bytes = bytes.subspan(bytes.size() - kMaxBufferedOutput);
    } else {
      const size_t room = kMaxBufferedOutput - output_.size();
      if (bytes.size() > room) output_.erase(output_.begin(), output_.begin() + static_cast<long>(bytes.size() - room));
    }
    output_.insert(output_.end(), bytes.begin(), bytes.end());
    // One wakeup per batch: the loop clears the flag before it sends what is buffered.
    wake = !wakeup_pending_;
    wakeup_pending_ = true;
  }
  if (wake) signal_eventfd(wakeup_.get());
}

void SocketConsole::on_wakeup() {
  drain_eventfd(wakeup_.get());
  {
    std::lock_guard lock(mutex_);
    wakeup_pending_ = false;
  }
  flush();
}

void SocketConsole::accept_client() {
  for (;;) {
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!client.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) log_line(std::string("console socket: accept: ") + std::strerror(errno));
      return;
    }
    close_client();  // the newest client is the console
    client_ = std::move(client);
    events_.add(client_.get(), [this] { serve_client(); });
    flush();
  }
}

void SocketConsole::serve_client() {
  if (!client_.valid()) return;
  uint8_t buffer[4096];
  for (;;) {
    ssize_t n = ::recv(client_.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      close_client();  // the client left (or its connection failed)
      return;
    }
    if (on_input_) on_input_({buffer, static_cast<size_t>(n)});
  }
  flush();  // woken because the client can take more output
}

void SocketConsole::flush() {
  if (!client_.valid()) return;
  uint8_t chunk[4096];
  for (;;) {
    // The lock is held across the non-blocking send so that bytes a vCPU drops from a full
    // buffer meanwhile are never the ones counted as sent.
    std::lock_guard lock(mutex_);
    if (output_.empty()) break;
    const size_t count = std::min(output_.size(), sizeof(chunk));
    std::copy_n(output_.begin(), count, chunk);
    ssize_t n = ::send(client_.get(), chunk, count, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      watch_client_writable(true);  // the rest waits (bounded) until the client reads
      return;
    }
    if (n <= 0) {
      close_client();  // kept in the buffer for the next client
      return;
    }
    output_.erase(output_.begin(), output_.begin() + n);
  }
  watch_client_writable(false);
}

void SocketConsole::watch_client_writable(bool writable) {
  if (writable == client_writable_watched_ || !client_.valid()) return;
  events_.watch_writable(client_.get(), writable);
  client_writable_watched_ = writable;
}

void SocketConsole::close_client() {
  if (!client_.valid()) return;
  events_.remove(client_.get());
  client_.reset();
  client_writable_watched_ = false;
}

Console::Console(const ConsoleConfig& config, EventLoop* events, InputHandler on_input) {
  switch (config.kind) {
    case ConsoleKind::kStdio: {
      output_fd_ = STDOUT_FILENO;
      input_fd_ = STDIN_FILENO;
      termios terminal{};
      if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &terminal) == 0) {
        // Keys go to the guest as typed and the guest echoes them; ISIG stays on so Ctrl-C
        // still stops kdom.
        saved_terminal_ = terminal;
        terminal.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
        terminal.c_iflag &= ~static_cast<tcflag_t>(ICRNL);
        tcsetattr(STDIN_FILENO, TCSANOW, &terminal);
      }
      break;
    }
    case ConsoleKind::kPty: {
      UniqueFd master(check_syscall(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK), "posix_openpt"));
      check_syscall(grantpt(master.get()), "grantpt");
      check_syscall(unlockpt(master.get()), "unlockpt");
      const char* name = ptsname(master.get());
      if (name == nullptr) throw SystemError("ptsname", errno);
      pty_path_ = name;
      pty_slave_.reset(check_syscall(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC), "open " + pty_path_));
      termios terminal{};
      if (tcgetattr(pty_slave_.get(), &terminal) == 0) {
        cfmakeraw(&terminal);
        tcsetattr(pty_slave_.get(), TCSANOW, &terminal);
      }
      output_fd_ = input_fd_ = master.get();
      owned_output_ = std::move(master);
      break;
    }
    case ConsoleKind::kFile: {
      int fd = ::open(config.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) throw SystemError("cannot open console file '" + config.path + "'", errno);
      owned_output_.reset(fd);
      output_fd_ = fd;
      break;
    }
    case ConsoleKind::kNone:
      break;
    case ConsoleKind::kSocket:
      if (events == nullptr) throw Error("a console on a socket needs an event loop (only --console can be one)");
      socket_ = std::make_unique<SocketConsole>(config.path, *events, std::move(on_input));
      break;
  }
}

Console::~Console() {
  if (saved_terminal_) tcsetattr(STDIN_FILENO, TCSANOW, &*saved_terminal_);
}

void Console::write_byte(uint8_t byte) {
  if (socket_) return socket_->write({&byte, 1});
  if (output_fd_ < 0) return;
  // A full pty (nobody reading) drops output rather than stalling the vCPU.
  while (::write(output_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
}

void Console::write(std::span<const uint8_t> bytes) {
  if (socket_) return socket_->write(bytes);
  if (output_fd_ < 0) return;
  while (!bytes.empty()) {
    ssize_t n = ::write(output_fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
}

}  // namespace kdom::vmm
