// `kdom shutdown`: the power-button request over the control socket.
#include "cli/shutdown_command.h"

#include "base/error.h"
#include "cli/control_client.h"

namespace kdom::cli {

namespace {
constexpr const char* kUsage = "usage: kdom shutdown --control PATH";
}  // namespace

int shutdown_command(const std::vector<std::string>& args, std::ostream& out) {
  if (wants_help(args)) {
    out << kUsage << "\n";
    return 0;
  }
  const auto [path, words] = parse_control_arguments(args, "kdom shutdown", kUsage);
  if (!words.empty()) throw Error("kdom shutdown: unexpected '" + words.front() + "' (" + kUsage + ")");
  control_request(path, {{"op", "power-button"}});
  out << "pressed the guest's power button; kdom run exits once the guest has powered off\n";
  return 0;
}

}  // namespace kdom::cli
