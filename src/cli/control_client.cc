// The `--control PATH` arguments shared by the commands that act on a `kdom run` domain.
#include "cli/control_client.h"

#include <algorithm>

#include "base/error.h"

namespace kdom::cli {

bool wants_help(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(), [](const std::string& arg) { return arg == "--help" || arg == "-h"; });
}

ControlArguments parse_control_arguments(const std::vector<std::string>& args, const std::string& command,
                                         const std::string& usage) {
  ControlArguments parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--control") {
      if (i + 1 == args.size()) throw Error("--control needs a path (" + usage + ")");
      parsed.path = args[++i];
    } else if (args[i].rfind("--control=", 0) == 0) {
      parsed.path = args[i].substr(10);
    } else if (args[i].rfind("-", 0) == 0) {
      throw Error(command + ": unknown option '" + args[i] + "' (" + usage + ")");
    } else {
      parsed.words.push_back(args[i]);
    }
  }
  if (parsed.path.empty()) throw Error(command + " needs --control PATH (" + usage + ")");
  return parsed;
}

}  // namespace kdom::cli
