// The client side of a running domain's control socket (`kdom run --control PATH`): one JSON
// request line out, one reply line back; and the `--control PATH` arguments the commands that
// use it (`kdom balloon`, `kdom shutdown`) share.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kdom::cli {

// Sends one request to the control socket at `path` and returns the reply. Throws Error when
// the socket is missing, nothing answers, the reply is not JSON, or the reply says ok:false
// (with the domain's error message).
nlohmann::json control_request(const std::string& path, const nlohmann::json& request);

// True while a domain listens on the control socket at `path` (a connection is made and closed
// at once); false once it is gone (kdom removes the socket when the domain has stopped).
bool control_socket_answers(const std::string& path);

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
