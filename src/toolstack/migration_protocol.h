// What two kdomds say to each other around a live migration (docs/migration.md): the source
// opens a connection (TCP to the destination's --migration-listen, or a socketpair inside one
// daemon for `kdom migrate DOM localhost`), sends a hello (a fixed header, then the token and
// the domain's config); the destination answers, then the source's VMM sends the snapshot
// stream (docs/snapshot-format.md) on the same connection and the daemons finish with a few
// messages: ready, go, resumed, done (or an error). Every message after the header is a
// 4-byte little-endian length and that many bytes of JSON; reads wait a bounded time.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kdom::toolstack {

// The connection broke, timed out, or the peer broke the protocol: one line saying which.
class MigrationError : public Error {
 public:
  using Error::Error;
};

inline constexpr char kMigrationMagic[8] = {'K', 'D', 'O', 'M', 'M', 'I', 'G', 'R'};
inline constexpr uint32_t kMigrationVersion = 1;
// No message is larger (a domain's config is a few KiB).
inline constexpr uint32_t kMaxMigrationMessageBytes = 1u << 20;
// The port `kdom migrate DOM HOST` uses when HOST names none (kdomd --migration-listen).
inline constexpr uint16_t kDefaultMigrationPort = 8003;

// Writes one message; throws MigrationError naming `peer` when the connection refuses it.
void send_migration_message(int fd, const nlohmann::json& message, const std::string& peer);
// Reads one message, waiting at most `timeout_ms` for each part; throws MigrationError when the
// connection ends or breaks, the time runs out (naming `waiting_for`), or the message is too
// large or not a JSON object. A message {"error": "..."} is returned like any other.
nlohmann::json receive_migration_message(int fd, int timeout_ms, const std::string& peer,
                                         const std::string& waiting_for);

// The source's first bytes: the header (magic, version), then a message with "token" and what
// the destination needs to accept the domain (`details`).
void send_migration_hello(int fd, const std::string& token, nlohmann::json details, const std::string& peer);
// The destination's check of them: a connection that does not begin with the header or sends
// the wrong token is refused (MigrationError) before anything else is read. Returns the
// hello without its token.
nlohmann::json receive_migration_hello(int fd, const std::string& expected_token, int timeout_ms);

// "HOST" or "HOST:PORT" ("[v6]:PORT"), the default port when none is given; throws Error for
// an empty host or a bad port.
std::pair<std::string, uint16_t> migration_target(const std::string& text);
// Connects to `host`:`port` (a name or an address), waiting at most `timeout_ms`; the socket
// has TCP keepalive set short, so a destination that vanishes is noticed within a minute.
UniqueFd connect_migration_peer(const std::string& host, uint16_t port, int timeout_ms);
// Keepalive and no Nagle delay for the small messages after the stream.
void tune_migration_socket(int fd);

}  // namespace kdom::toolstack
