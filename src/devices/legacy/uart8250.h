// A 16550A UART (8250 family), as Linux's 8250 driver expects: divisor latch, FIFO control,
// loopback, scratch register, and interrupts for received data and an empty transmitter.
// Transmission is instant: every byte written to THR goes straight to the output sink.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

#include <nlohmann/json.hpp>

#include "devices/bus.h"
#include "devices/interrupt_line.h"

namespace kdom::devices {

class Uart8250 : public BusDevice {
 public:
  using OutputSink = std::function<void(uint8_t)>;
  static constexpr uint64_t kRegisterCount = 8;
  static constexpr size_t kInputLimit = 64 * 1024;

  Uart8250(std::shared_ptr<InterruptLine> irq, OutputSink output);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues bytes for the guest to read; returns how many were accepted (the rest exceed the
  // input buffer).
  size_t enqueue_input(std::span<const uint8_t> bytes);

  // Save and restore: {"ier", "lcr", "mcr", "scr", "fcr", "dll", "dlm" (registers),
  // "thr_empty_interrupt" (bool), "input" (hex, the bytes the guest has not read, at most
  // kInputLimit)}. load_state checks every field first (snapshot::StateError naming it, the
  // UART unchanged), then sets the interrupt line to what the registers say (raised again if
  // it was).
  nlohmann::json save_state() const;
  void load_state(const nlohmann::json& state);

 private:
  uint8_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint8_t value);
  uint8_t interrupt_identification() const;
  void update_interrupt();

  mutable std::mutex mutex_;
  std::shared_ptr<InterruptLine> irq_;
  OutputSink output_;
  std::deque<uint8_t> input_;
  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, fcr_ = 0;
  uint8_t dll_ = 0x0c, dlm_ = 0;  // 9600 baud
  bool thr_empty_interrupt_ = false;
  bool irq_asserted_ = false;
};

}  // namespace kdom::devices
