// `kdom run`: boots one domain in the foreground (also how kdomd starts each domain's VMM).
#pragma once

#include <string>
#include <vector>

namespace kdom::cli {

// `args` excludes "run". Returns the process exit status (docs/interfaces.md).
int run_command(const std::vector<std::string>& args, const std::string& guest_dir);

}  // namespace kdom::cli
