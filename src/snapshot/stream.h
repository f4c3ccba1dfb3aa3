// The snapshot stream: a domain's whole state as a versioned sequence of typed records, the same
// for a file (kdom save / restore) and for live migration (docs/snapshot-format.md). A stream
// is a header (magic, version) followed by records, each a fixed 24-byte head (type, flags,
// body length, the body's CRC-32 and the head's own) and its body, padded to 8 bytes; it ends
// with an End record. Writer and reader work on any fd (a file, a pipe, a socket) and check
// everything: a stream from another version, a truncated one or a corrupted record is refused
// with what was wrong and where (the record's number, type and offset).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"

namespace kdom::snapshot {

// A bad stream: one line naming what is wrong and where.
class StreamError : public Error {
 public:
  using Error::Error;
};

inline constexpr char kMagic[8] = {'K', 'D', 'O', 'M', 'S', 'N', 'A', 'P'};
inline constexpr uint32_t kVersion = 1;
// No record body is larger (a memory record carries at most this much of guest RAM).
inline constexpr uint64_t kMaxRecordBytes = uint64_t{64} << 20;

enum class RecordType : uint32_t {
  kHostFacts = 1,  // JSON: the saving host and kdom (version, CPU vendor and model, time)
  kConfig = 2,     // JSON: the domain's VM config
  kMemory = 3,     // guest-physical address (8 bytes), then the pages' bytes
  kVcpu = 4,       // one vCPU's state
  kIrqchip = 5,    // PIC, IOAPIC, PIT, the KVM clock
  kDevice = 6,     // one device: its id (length-prefixed), then its own state
  kZeroMemory = 7, // guest-physical address (8 bytes), page count (4), reserved (4): pages now zero
  kEnd = 0xffff,   // the last record: empty
};

// "memory", "vcpu"...; "type N" for a number no record has.
std::string record_type_name(uint32_t type);

struct Record {
  RecordType type;
  std::vector<uint8_t> body;
};

// A record's head as the reader found it: its type and body length (checked).
struct RecordHead {
  RecordType type;
  uint64_t length;
};

class StreamWriter {
 public:
  // Writes the stream header to `fd` (which stays the caller's). `name` is for messages.
  StreamWriter(int fd, std::string name);
  // Sends what is still gathered, as far as the fd takes it without waiting (errors ignored):
  // a stream left without its End record is truncated where the caller stopped.
  ~StreamWriter();
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;
  // Throws StreamError (a body above kMaxRecordBytes) or SystemError (the fd refused it).
  // Heads, padding and small bodies are gathered and go to the fd with the next large body or
  // at finish(): one system call for many records, where each would cost three (on a socket,
  // each runs the peer's receive path too: the state records of a migration's pause).
  void write(RecordType type, std::span<const uint8_t> body);
  // The same for a body in parts, written as they are (no copy into one buffer: guest RAM).
  void write(RecordType type, std::initializer_list<std::span<const uint8_t>> parts);
  // Writes the End record and sends everything; nothing may follow.
  void finish();
  // The stream's bytes so far, given to the fd or gathered for it.
  uint64_t bytes_written() const { return offset_; }

 private:
  void put(std::span<const uint8_t> bytes);
  // Sends `first` then `second` whole (waiting while a non-blocking socket is full), or as much
  // as the fd takes at once when `wait` is false.
  void send(std::span<const uint8_t> first, std::span<const uint8_t> second, bool wait = true);
  int fd_;
  std::string name_;
  bool socket_;  // written with send(MSG_NOSIGNAL)
  std::vector<uint8_t> gathered_;
  uint64_t offset_ = 0;  // given to put
  uint64_t sent_ = 0;    // of which on the fd
  uint64_t records_ = 0;
  bool finished_ = false;
};

class StreamReader {
 public:
  // Reads and checks the stream header from `fd` (which stays the caller's).
  StreamReader(int fd, std::string name);
  // The next record, or nothing after the End record. Throws StreamError for a truncated
  // stream, a bad head or body checksum, an unknown type, a body too large.
  std::optional<Record> next();
  // The same in steps, for a body that goes straight where it belongs (guest RAM) instead of
  // into a buffer: the next record's head (checked), or nothing after the End record; then its
  // body's bytes in order (read_body, as often as needed), then end_body, which reads the
  // padding and checks the body's checksum. Where the body went before that check is the
  // caller's to throw away if it fails.
  std::optional<RecordHead> next_head();
  void read_body(std::span<uint8_t> bytes);
  void end_body();
  uint64_t offset() const { return offset_; }

 private:
  // Reads exactly `bytes`; false at a clean end of the stream before the first byte.
  bool get(std::span<uint8_t> bytes, const std::string& what, bool end_allowed);
  std::string where() const;
  int fd_;
  std::string name_;
  uint64_t offset_ = 0;
  uint64_t records_ = 0;
  bool ended_ = false;
  // The record being read (between next_head and end_body).
  std::optional<RecordHead> current_;
  std::string current_where_;
  uint64_t body_left_ = 0;
  uint32_t body_crc_ = 0, expected_body_crc_ = 0;
};

}  // namespace kdom::snapshot
