// `kdom balloon`: a client of the control socket.
#include "cli/balloon_command.h"

#include <iomanip>
#include <sstream>

#include "base/error.h"
#include "cli/control_client.h"

namespace kdom::cli {

namespace {

constexpr const char* kUsage = "usage: kdom balloon --control PATH set MIB | kdom balloon --control PATH stats";

uint64_t parse_mib(const std::string& text) {
  if (text.empty() || text.size() > 12 || text.find_first_not_of("0123456789") != std::string::npos)
    throw Error("balloon target must be a whole number of MiB, not '" + text + "'");
  return std::stoull(text);
}

std::string number_text(const nlohmann::json& value) {
  if (value.is_number_float()) {
    std::ostringstream out;
    out << std::fixed << std::setprecision(1) << value.get<double>();
    return out.str();
  }
  return value.dump();
}

}  // namespace

int balloon_command(const std::vector<std::string>& args, std::ostream& out) {
  if (wants_help(args)) {
    out << kUsage << "\n";
    return 0;
  }
  const auto [path, words] = parse_control_arguments(args, "kdom balloon", kUsage);
  if (words.size() == 2 && words[0] == "set") {
    const uint64_t mib = parse_mib(words[1]);
    control_request(path, {{"op", "balloon-set"}, {"target_mib", mib}});
    out << "balloon target set to " << mib << " MiB\n";
    return 0;
  }
  if (words.size() == 1 && words[0] == "stats") {
    const nlohmann::json reply = control_request(path, {{"op", "balloon-stats"}});
    for (const char* key : {"target_mib", "actual_mib", "actual_pages", "pages_inflated", "pages_deflated",
                            "pages_reported", "pages_refused", "stats_age_s"})
      if (reply.contains(key) && !reply[key].is_null()) out << key << ": " << number_text(reply[key]) << "\n";
    if (reply.contains("stats") && reply["stats"].is_object()) {
      if (reply["stats"].empty()) out << "guest statistics: none yet\n";
      for (const auto& [name, value] : reply["stats"].items()) out << "stats." << name << ": " << number_text(value) << "\n";
    }
    return 0;
  }
  throw Error("kdom balloon: expected 'set MIB' or 'stats' (" + std::string(kUsage) + ")");
}

}  // namespace kdom::cli
