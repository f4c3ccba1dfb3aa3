// Console: the host side of a guest console (the COM1 serial port, or virtio-console's hvc0):
// where the guest's output goes and where its input comes from: the terminal (stdio), a new
// pseudo-terminal, a file, or nowhere.
#pragma once

#include <termios.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/unique_fd.h"
#include "vmm/vm_config.h"

namespace kdom::vmm {

class Console {
 public:
  // Throws Error when the file or pty cannot be opened.
  explicit Console(const ConsoleConfig& config);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  void write_byte(uint8_t byte);
  // Writes all of `bytes` (a full pty, nobody reading, drops the rest).
  void write(std::span<const uint8_t> bytes);
  // The fd to read guest input from, or -1 when the console has no input.
  int input_fd() const { return input_fd_; }
  // Called when input_fd reached end of file: stop reading it.
  void input_closed() { input_fd_ = -1; }
  // The pty's path, for ConsoleKind::kPty.
  const std::string& pty_path() const { return pty_path_; }

 private:
  int output_fd_ = -1;
  int input_fd_ = -1;
  UniqueFd owned_output_;
  UniqueFd pty_slave_;  // kept open so the master never sees a hang-up
  std::string pty_path_;
  std::optional<termios> saved_terminal_;
};

}  // namespace kdom::vmm
