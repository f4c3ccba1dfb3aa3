// `kdom balloon`: changes the balloon target of a running domain, or shows its statistics,
// through the domain's control socket (`kdom run --control PATH`).
//   kdom balloon --control PATH set MIB
//   kdom balloon --control PATH stats
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kdom::cli {

// `args` excludes the program name and the "balloon" word. Prints the reply readably to
// `out`; returns the exit status (0). Throws Error on bad arguments or a failed request.
int balloon_command(const std::vector<std::string>& args, std::ostream& out);

}  // namespace kdom::cli
