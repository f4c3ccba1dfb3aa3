// SnapshotSource: a saved domain being read back (kdom restore), or one arriving from another
// host (live migration): the stream, its host-facts and config records read and checked first
// (a restore needs the config to build the domain before it can load the rest), the remaining
// records then read by the domain as it loads them.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "snapshot/stream.h"

namespace kdom::snapshot {

// A record whose body is JSON (host facts, config, vCPU, irqchip, device): the body as text,
// and back, refusing a body that is not a JSON object with StreamError naming `what`.
std::vector<uint8_t> json_body(const nlohmann::json& value);
nlohmann::json parse_json_body(const Record& record, const std::string& what);

class SnapshotSource {
 public:
  // Opens the file `path`; throws SystemError (cannot open) or StreamError (not a kdom
  // snapshot, another version, damaged, no host-facts or config record where they belong).
  explicit SnapshotSource(const std::string& path);
  // Reads the stream from `fd` (a socket or a pipe: an incoming migration), which it owns and
  // closes when it goes; `name` stands for it in messages ("the incoming migration (fd 3)").
  // Nothing is read beyond what the records take, so the bytes after the End record stay in
  // the fd for whoever shares it. The same errors as above.
  SnapshotSource(UniqueFd fd, std::string name);

  const std::string& name() const { return name_; }
  const nlohmann::json& host_facts() const { return host_facts_; }
  // The config record's two parts: the VM config (the document `kdom run --config` takes)
  // and what the saving toolstack kept there (kdomd: its config of the domain), or null.
  const nlohmann::json& config() const { return config_; }
  const nlohmann::json& toolstack() const { return toolstack_; }
  // Where the saving VMM had each virtio device: `{"devices":[{"slot":N,"id":..},..]}` (as
  // vmm::PciDevices::saved_slots reads it), or null in a stream from before it was kept there.
  const nlohmann::json& pci_slots() const { return pci_slots_; }
  // The records after the config, up to the End record.
  StreamReader& reader() { return reader_; }

 private:
  std::string name_;
  UniqueFd fd_;
  StreamReader reader_;
  nlohmann::json host_facts_;
  nlohmann::json config_;
  nlohmann::json toolstack_;
  nlohmann::json pci_slots_;
};

}  // namespace kdom::snapshot
