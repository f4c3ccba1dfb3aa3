// Console back ends.
#include "vmm/console.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "base/error.h"

namespace kdom::vmm {

Console::Console(const ConsoleConfig& config) {
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
  }
}

Console::~Console() {
  if (saved_terminal_) tcsetattr(STDIN_FILENO, TCSANOW, &*saved_terminal_);
}

void Console::write_byte(uint8_t byte) {
  if (output_fd_ < 0) return;
  // A full pty (nobody reading) drops output rather than stalling the vCPU.
  while (::write(output_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
}

void Console::write(std::span<const uint8_t> bytes) {
  if (output_fd_ < 0) return;
  while (!bytes.empty()) {
    ssize_t n = ::write(output_fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
}

}  // namespace kdom::vmm
