// The `--control PATH` arguments the commands that act on a `kdom run` domain (`kdom balloon`,
// `kdom shutdown`) share; the socket's client itself is vmm/control_client.
#pragma once

#include <string>
#include <vector>

#include "vmm/control_client.h"

namespace kdom::cli {

using vmm::control_request;
using vmm::control_socket_answers;

struct ControlArguments {
  std::string path;                // from --control PATH or --control=PATH
  std::vector<std::string> words;  // the rest, in order
};

// True when `args` ask for help (--help or -h anywhere).
bool wants_help(const std::vector<std::string>& args);

// Splits a command's arguments into --control's path and its other words. Throws Error, naming
// `command` and showing `usage`, on an unknown option or a missing path.
ControlArguments parse_control_arguments(const std::vector<std::string>& args, const std::string& command,
                                         const std::string& usage);

}  // namespace kdom::cli
