// Console: the host side of a guest console (the COM1 serial port, or virtio-console's hvc0):
// where the guest's output goes and where its input comes from: the terminal (stdio), a new
// pseudo-terminal, a file, a Unix socket kdom listens on, or nowhere.
#pragma once

#include <termios.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "base/unique_fd.h"
#include "vmm/event_loop.h"
#include "vmm/vm_config.h"

namespace kdom::vmm {

// The console on a Unix socket (`--console socket:PATH`), served in an EventLoop: one client
// at a time (a new one replaces the old, which is closed); the guest's output goes to the
// client, and while there is none, or it reads slowly, waits in a bounded buffer (the oldest
// bytes are dropped) that the next client gets first; what the client sends is the guest's
// input. Output may come from any thread (a vCPU's): it only takes a lock and wakes the loop.
class SocketConsole {
 public:
  static constexpr size_t kMaxBufferedOutput = 64 * 1024;
  using InputHandler = std::function<void(std::span<const uint8_t>)>;

  // Binds and listens on `path` (an existing path is refused) and serves it in `events`,
  // which must outlive this object and be stopped before it is destroyed (or never started).
  // `on_input` runs in the loop's thread.
  SocketConsole(const std::string& path, EventLoop& events, InputHandler on_input);
  ~SocketConsole();
  SocketConsole(const SocketConsole&) = delete;
  SocketConsole& operator=(const SocketConsole&) = delete;

  void write(std::span<const uint8_t> bytes);
  const std::string& path() const { return path_; }

 private:
  void accept_client();
  void serve_client();
  void on_wakeup();
  // Sends buffered output until the client would block; the client is closed when it fails.
  void flush();
  void close_client();
  void watch_client_writable(bool writable);

  std::string path_;
  EventLoop& events_;
  InputHandler on_input_;
  UniqueFd listener_;
  UniqueFd wakeup_;  // eventfd: output is waiting
  UniqueFd client_;  // touched only in the loop's thread
  bool client_writable_watched_ = false;

  std::mutex mutex_;
  std::deque<uint8_t> output_;   // guarded by mutex_
  bool wakeup_pending_ = false;  // guarded by mutex_: wakeup_ signalled, not yet handled
};

class Console {
 public:
  using InputHandler = SocketConsole::InputHandler;

  // Throws Error when the file, pty or socket cannot be opened. A socket console needs
  // `events` (where it is served) and `on_input` (the guest's input); the other kinds give
  // their input through input_fd().
  explicit Console(const ConsoleConfig& config, EventLoop* events = nullptr, InputHandler on_input = {});
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  void write_byte(uint8_t byte);
  // Writes all of `bytes` (a full pty, nobody reading, drops the rest).
  void write(std::span<const uint8_t> bytes);
  // The fd to read guest input from, or -1 when the console has no input (or it comes
  // through the input handler).
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
  std::unique_ptr<SocketConsole> socket_;
};

}  // namespace kdom::vmm
