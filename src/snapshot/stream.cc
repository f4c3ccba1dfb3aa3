// Writing and reading the snapshot stream's records.
#include "snapshot/stream.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kdom::snapshot {

namespace {

constexpr size_t kHeaderBytes = 16;  // magic, version, reserved
constexpr size_t kHeadBytes = 24;    // type, flags, length, body CRC, head CRC
constexpr size_t kAlignment = 8;
constexpr size_t kGatherBytes = 64 * 1024;  // StreamWriter: what it gathers before it sends

// zlib takes at most 4 GiB a call; bodies are far smaller (kMaxRecordBytes).
uint32_t crc_of(std::span<const uint8_t> bytes, uLong crc = crc32(0L, Z_NULL, 0)) {
  return static_cast<uint32_t>(crc32(crc, bytes.data(), static_cast<uInt>(bytes.size())));
}

void put_le(uint8_t* at, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) at[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t get_le(const uint8_t* at, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i) value |= uint64_t{at[i]} << (8 * i);
  return value;
}

size_t padding_after(uint64_t length) { return static_cast<size_t>((kAlignment - length % kAlignment) % kAlignment); }

bool known_type(uint32_t type) {
  switch (static_cast<RecordType>(type)) {
    case RecordType::kHostFacts:
    case RecordType::kConfig:
    case RecordType::kMemory:
    case RecordType::kVcpu:
    case RecordType::kIrqchip:
    case RecordType::kDevice:
    case RecordType::kZeroMemory:
    case RecordType::kEnd:
      return true;
  }
  return false;
}

}  // namespace

std::string record_type_name(uint32_t type) {
  switch (static_cast<RecordType>(type)) {
    case RecordType::kHostFacts: return "host-facts";
    case RecordType::kConfig: return "config";
    case RecordType::kMemory: return "memory";
    case RecordType::kVcpu: return "vcpu";
    case RecordType::kIrqchip: return "irqchip";
    case RecordType::kDevice: return "device";
    case RecordType::kZeroMemory: return "zero-memory";
    case RecordType::kEnd: return "end";
  }
  return "type " + std::to_string(type);
}

namespace {
bool is_socket(int fd) {
  struct stat status{};
  return ::fstat(fd, &status) == 0 && S_ISSOCK(status.st_mode);
}
}  // namespace

StreamWriter::StreamWriter(int fd, std::string name) : fd_(fd), name_(std::move(name)), socket_(is_socket(fd)) {
  uint8_t header[kHeaderBytes] = {};
  std::memcpy(header, kMagic, sizeof(kMagic));
  put_le(header + 8, kVersion, 4);
  put(header);
  send(gathered_, {});  // a fd that takes nothing fails here, before any record
  gathered_.clear();
}

StreamWriter::~StreamWriter() {
  try {
    send(gathered_, {}, /*wait=*/false);
  } catch (const std::exception&) {
  }
}

void StreamWriter::put(std::span<const uint8_t> bytes) {
  if (gathered_.size() + bytes.size() <= kGatherBytes) {
    gathered_.insert(gathered_.end(), bytes.begin(), bytes.end());
  } else {
    send(gathered_, bytes);
    gathered_.clear();
  }
  offset_ += bytes.size();
}

void StreamWriter::send(std::span<const uint8_t> first, std::span<const uint8_t> second, bool wait) {
  while (!first.empty() || !second.empty()) {
    iovec parts[2] = {{const_cast<uint8_t*>(first.data()), first.size()},
                      {const_cast<uint8_t*>(second.data()), second.size()}};
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = 2;
    // A socket whose peer went away fails the write (EPIPE) without a SIGPIPE.
    const ssize_t n = socket_ ? ::sendmsg(fd_, &message, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT))
                              : ::writev(fd_, parts, 2);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait) return;
      // A non-blocking socket (a migration's, as its sender made it): wait until it takes more.
      pollfd writable{fd_, POLLOUT, 0};
      if (::poll(&writable, 1, -1) >= 0 || errno == EINTR) continue;
    }
    if (n <= 0) throw SystemError("cannot write snapshot '" + name_ + "' at byte " + std::to_string(sent_), n < 0 ? errno : EIO);
    auto done = static_cast<size_t>(n);
    sent_ += done;
    const size_t of_first = std::min(done, first.size());
    first = first.subspan(of_first);
    second = second.subspan(done - of_first);
  }
}

void StreamWriter::write(RecordType type, std::span<const uint8_t> body) { write(type, {body}); }

void StreamWriter::write(RecordType type, std::initializer_list<std::span<const uint8_t>> parts) {
  if (finished_) throw StreamError("snapshot '" + name_ + "': a record after the end");
  uint64_t size = 0;
  uint32_t body_crc = crc_of({});
  for (const auto& part : parts) {
    size += part.size();
    body_crc = crc_of(part, body_crc);
  }
  if (size > kMaxRecordBytes)
    throw StreamError("snapshot '" + name_ + "': a " + record_type_name(static_cast<uint32_t>(type)) + " record of " +
                      std::to_string(size) + " bytes is above the limit of " + std::to_string(kMaxRecordBytes));
  uint8_t head[kHeadBytes] = {};
  put_le(head, static_cast<uint32_t>(type), 4);
  put_le(head + 4, 0, 4);  // flags: none defined in version 1
  put_le(head + 8, size, 8);
  put_le(head + 16, body_crc, 4);
  put_le(head + 20, crc_of({head, 20}), 4);
  put(head);
  for (const auto& part : parts) put(part);
  static constexpr uint8_t kZeros[kAlignment] = {};
  put({kZeros, padding_after(size)});
  ++records_;
}

void StreamWriter::finish() {
  write(RecordType::kEnd, {});
  finished_ = true;
  send(gathered_, {});
  gathered_.clear();
}

StreamReader::StreamReader(int fd, std::string name) : fd_(fd), name_(std::move(name)) {
  uint8_t header[kHeaderBytes];
  get(header, "the stream header", false);
  if (std::memcmp(header, kMagic, sizeof(kMagic)) != 0)
    throw StreamError("snapshot '" + name_ + "' is not a kdom snapshot (no KDOMSNAP magic at its start)");
  const auto version = static_cast<uint32_t>(get_le(header + 8, 4));
  if (version != kVersion)
    throw StreamError("snapshot '" + name_ + "' has format version " + std::to_string(version) + "; this kdom reads version " +
                      std::to_string(kVersion));
}

std::string StreamReader::where() const {
  return "snapshot '" + name_ + "', record " + std::to_string(records_ + 1) + " at byte " + std::to_string(offset_);
}

bool StreamReader::get(std::span<uint8_t> bytes, const std::string& what, bool end_allowed) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking socket (an incoming migration's, as its daemon passed it on): wait for
      // it here rather than make it blocking, which would change it for the daemon too (the
      // flag belongs to the open file description both share).
      pollfd readable{fd_, POLLIN, 0};
      if (::poll(&readable, 1, -1) < 0 && errno != EINTR) throw SystemError("cannot read " + where(), errno);
      continue;
    }
    if (n < 0) throw SystemError("cannot read " + where(), errno);
    if (n == 0) {
      if (done == 0 && end_allowed) return false;
      throw StreamError("snapshot '" + name_ + "' is truncated: it ends inside " + what + " (byte " +
                        std::to_string(offset_ + done) + ")");
    }
    done += static_cast<size_t>(n);
  }
  offset_ += bytes.size();
  return true;
}

std::optional<RecordHead> StreamReader::next_head() {
  if (current_) throw StreamError(current_where_ + ": the record before was not read to its end");
  if (ended_) return std::nullopt;
  const std::string here = where();
  uint8_t head[kHeadBytes];
  if (!get(head, "a record's head", true))
    throw StreamError("snapshot '" + name_ + "' is truncated: it ends after " + std::to_string(records_) +
                      " records without an end record (byte " + std::to_string(offset_) + ")");
  if (get_le(head + 20, 4) != crc_of({head, 20})) throw StreamError(here + ": the record's head is corrupted (checksum)");
  const auto type = static_cast<uint32_t>(get_le(head, 4));
  const uint64_t length = get_le(head + 8, 8);
  if (!known_type(type)) throw StreamError(here + ": unknown record type " + std::to_string(type));
  if (length > kMaxRecordBytes)
    throw StreamError(here + ": a " + record_type_name(type) + " record of " + std::to_string(length) +
                      " bytes is above the limit of " + std::to_string(kMaxRecordBytes));
  current_ = RecordHead{static_cast<RecordType>(type), length};
  current_where_ = here;
  body_left_ = length;
  body_crc_ = crc_of({});
  expected_body_crc_ = static_cast<uint32_t>(get_le(head + 16, 4));
  return current_;
}

void StreamReader::read_body(std::span<uint8_t> bytes) {
  if (!current_ || bytes.size() > body_left_)
    throw StreamError(current_where_ + ": a read past the end of the record's body");
  get(bytes, "a " + record_type_name(static_cast<uint32_t>(current_->type)) + " record's body", false);
  body_crc_ = crc_of(bytes, body_crc_);
  body_left_ -= bytes.size();
}

void StreamReader::end_body() {
  if (!current_ || body_left_ != 0) throw StreamError(current_where_ + ": the record's body was not read whole");
  const RecordHead head = *current_;
  uint8_t padding[kAlignment];
  get({padding, padding_after(head.length)}, "a record's padding", false);
  if (body_crc_ != expected_body_crc_)
    throw StreamError(current_where_ + ": the " + record_type_name(static_cast<uint32_t>(head.type)) +
                      " record's body is corrupted (checksum)");
  current_.reset();
  ++records_;
  if (head.type == RecordType::kEnd) {
    if (head.length != 0) throw StreamError(current_where_ + ": the end record has a body");
    ended_ = true;
  }
}

std::optional<Record> StreamReader::next() {
  const auto head = next_head();
  if (!head) return std::nullopt;
  Record record{head->type, std::vector<uint8_t>(head->length)};
  read_body(record.body);
  end_body();
  return record;
}

}  // namespace kdom::snapshot
