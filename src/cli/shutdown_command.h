// `kdom shutdown`: asks a running domain's guest to shut down, as `xl shutdown` and `virsh
// shutdown` do, by pressing its ACPI power button through the domain's control socket
// (`kdom run --control PATH`). The guest's OS decides: a Debian guest (systemd-logind) powers
// off cleanly, and `kdom run` then exits 0. It returns at once, or with --wait once the domain
// has ended (an error if it has not within SECONDS).
//   kdom shutdown --control PATH [--wait SECONDS]
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kdom::cli {

// `args` excludes the program name and the "shutdown" word. Returns the exit status (0);
// throws Error on bad arguments or a failed request.
int shutdown_command(const std::vector<std::string>& args, std::ostream& out);

}  // namespace kdom::cli
