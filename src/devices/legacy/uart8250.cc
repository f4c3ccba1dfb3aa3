// 16550A register model.
#include "devices/legacy/uart8250.h"

#include "snapshot/state_json.h"

namespace kdom::devices {

namespace {
enum Register : uint64_t { kData = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };
constexpr uint8_t kIerReceivedData = 0x01;
constexpr uint8_t kIerThrEmpty = 0x02;
constexpr uint8_t kIerMask = 0x0f;
constexpr uint8_t kIirNoInterrupt = 0x01;
constexpr uint8_t kIirThrEmpty = 0x02;
constexpr uint8_t kIirReceivedData = 0x04;
constexpr uint8_t kIirFifoEnabled = 0xc0;
constexpr uint8_t kFcrEnableFifo = 0x01;
constexpr uint8_t kFcrClearReceive = 0x02;
constexpr uint8_t kLcrDivisorLatch = 0x80;
constexpr uint8_t kMcrLoopback = 0x10;
constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrThrEmpty = 0x20;
constexpr uint8_t kLsrTransmitterEmpty = 0x40;
constexpr uint8_t kMsrConnected = 0xb0;  // DCD, DSR, CTS
}  // namespace

Uart8250::Uart8250(std::shared_ptr<InterruptLine> irq, OutputSink output)
    : irq_(std::move(irq)), output_(std::move(output)) {}

void Uart8250::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (auto& byte : data) byte = read_register(offset);
  update_interrupt();
}

void Uart8250::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (uint8_t byte : data) write_register(offset, byte);
  update_interrupt();
}

size_t Uart8250::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  size_t room = kInputLimit - std::min(kInputLimit, input_.size());
  size_t accepted = std::min(room, bytes.size());
  input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(accepted));
  update_interrupt();
  return accepted;
}

uint8_t Uart8250::read_register(uint64_t offset) {
  bool latch = (lcr_ & kLcrDivisorLatch) != 0;
  switch (offset) {
    case kData:
      if (latch) return dll_;
      if (input_.empty()) return 0;
      {
        uint8_t byte = input_.front();
        input_.pop_front();
        return byte;
      }
    case kIer:
      return latch ? dlm_ : ier_;
    case kIirFcr: {
      uint8_t iir = interrupt_identification();
      // Reading IIR acknowledges a THR-empty interrupt.
      if (iir == kIirThrEmpty) thr_empty_interrupt_ = false;
      return iir | ((fcr_ & kFcrEnableFifo) ? kIirFifoEnabled : 0);
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return (input_.empty() ? 0 : kLsrDataReady) | kLsrThrEmpty | kLsrTransmitterEmpty;
    case kMsr:
      if (mcr_ & kMcrLoopback) {
        // In loopback, modem inputs follow the outputs: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) | ((mcr_ & 0x04) << 4) |
                                    ((mcr_ & 0x08) << 4));
      }
      return kMsrConnected;
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
}

void Uart8250::write_register(uint64_t offset, uint8_t value) {
  bool latch = (lcr_ & kLcrDivisorLatch) != 0;
  switch (offset) {
    case kData:
      if (latch) {
        dll_ = value;
      } else {
        if (mcr_ & kMcrLoopback) {
          if (input_.size() < kInputLimit) input_.push_back(value);
        } else if (output_) {
          output_(value);
        }
        thr_empty_interrupt_ = true;  // the byte left at once
      }
      break;
    case kIer:
      if (latch) {
        dlm_ = value;
      } else {
        bool enabling_thre = !(ier_ & kIerThrEmpty) && (value & kIerThrEmpty);
        ier_ = value & kIerMask;
        if (enabling_thre) thr_empty_interrupt_ = true;
      }
      break;
    case kIirFcr:
      fcr_ = value;
      if (value & kFcrClearReceive) input_.clear();
      break;
    case kLcr:
      lcr_ = value;
      break;
    case kMcr:
      mcr_ = value & 0x1f;
      break;
    case kScr:
      scr_ = value;
      break;
    default:
      break;  // LSR and MSR are read-only
  }
}

uint8_t Uart8250::interrupt_identification() const {
  if ((ier_ & kIerReceivedData) && !input_.empty()) return kIirReceivedData;
  if ((ier_ & kIerThrEmpty) && thr_empty_interrupt_) return kIirThrEmpty;
  return kIirNoInterrupt;
}

void Uart8250::update_interrupt() {
  bool asserted = interrupt_identification() != kIirNoInterrupt;
  if (asserted != irq_asserted_) {
    irq_asserted_ = asserted;
    if (irq_) irq_->set_level(asserted);
  }
}

nlohmann::json Uart8250::save_state() const {
  std::lock_guard lock(mutex_);
  const std::vector<uint8_t> input(input_.begin(), input_.end());
  return {{"ier", ier_},
          {"lcr", lcr_},
          {"mcr", mcr_},
          {"scr", scr_},
          {"fcr", fcr_},
          {"dll", dll_},
          {"dlm", dlm_},
          {"thr_empty_interrupt", thr_empty_interrupt_},
          {"input", snapshot::bytes_to_hex(input)}};
}

void Uart8250::load_state(const nlohmann::json& state) {
  const std::string what = "uart";
  auto byte = [&](const char* key, uint8_t mask = 0xff) {
    return static_cast<uint8_t>(snapshot::state_u64(state, key, what, mask));
  };
  // IER and MCR hold only the bits a write can set; anything else no UART could have saved.
  const uint8_t ier = byte("ier", kIerMask), lcr = byte("lcr"), mcr = byte("mcr", 0x1f), scr = byte("scr");
  const uint8_t fcr = byte("fcr"), dll = byte("dll"), dlm = byte("dlm");
  const bool thr_empty_interrupt = snapshot::state_bool(state, "thr_empty_interrupt", what);
  const std::vector<uint8_t> input = snapshot::state_bytes_up_to(state, "input", what, kInputLimit);
  std::lock_guard lock(mutex_);
  ier_ = ier, lcr_ = lcr, mcr_ = mcr, scr_ = scr, fcr_ = fcr, dll_ = dll, dlm_ = dlm;
  thr_empty_interrupt_ = thr_empty_interrupt;
  input_.assign(input.begin(), input.end());
  // The line follows the loaded registers, whatever it was before.
  irq_asserted_ = interrupt_identification() != kIirNoInterrupt;
  if (irq_) irq_->set_level(irq_asserted_);
}

}  // namespace kdom::devices
