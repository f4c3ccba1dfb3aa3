// Reading a saved domain's first records (snapshot_source.h).
#include "snapshot/snapshot_source.h"

#include <fcntl.h>

#include "base/error.h"

namespace kdom::snapshot {

namespace {

UniqueFd open_for_reading(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw SystemError("cannot open snapshot '" + path + "'", errno);
  return fd;
}

nlohmann::json expect_json_record(StreamReader& reader, RecordType type, const std::string& name,
                                  const std::string& what) {
  auto record = reader.next();
  if (!record || record->type != type)
    throw StreamError("snapshot '" + name + "' does not begin with its " + what + " record");
  return parse_json_body(*record, what);
}

}  // namespace

std::vector<uint8_t> json_body(const nlohmann::json& value) {
  const std::string text = value.dump();
  return {text.begin(), text.end()};
}

nlohmann::json parse_json_body(const Record& record, const std::string& what) {
  auto value = nlohmann::json::parse(record.body.begin(), record.body.end(), nullptr, false);
  if (value.is_discarded() || !value.is_object()) throw StreamError("the " + what + " record is not a JSON object");
  return value;
}

SnapshotSource::SnapshotSource(const std::string& path) : SnapshotSource(open_for_reading(path), path) {}

SnapshotSource::SnapshotSource(UniqueFd fd, std::string name)
    : name_(std::move(name)), fd_(std::move(fd)), reader_(fd_.get(), name_) {
  host_facts_ = expect_json_record(reader_, RecordType::kHostFacts, name_, "host-facts");
  auto config = expect_json_record(reader_, RecordType::kConfig, name_, "config");
  if (!config.contains("vm") || !config["vm"].is_object())
    throw StreamError("snapshot '" + name_ + "': its config record has no \"vm\" object");
  config_ = std::move(config["vm"]);
  if (config.contains("toolstack")) toolstack_ = std::move(config["toolstack"]);
  if (config.contains("pci_slots")) pci_slots_ = std::move(config["pci_slots"]);
}

}  // namespace kdom::snapshot
