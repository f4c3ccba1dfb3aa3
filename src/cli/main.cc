// kdom: the command line. Today it has `kdom run`, which boots one domain in the foreground,
// and `kdom balloon` and `kdom shutdown`, which act on a running domain through its control
// socket; the daemon's commands come later.
#include <signal.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "cli/balloon_command.h"
#include "cli/run_options.h"
#include "cli/shutdown_command.h"
#include "vmm/domain.h"

#ifndef KDOM_VERSION
#error "KDOM_VERSION must be defined by the build (CMake's project version)"
#endif

#ifndef KDOM_GUEST_DIR
#define KDOM_GUEST_DIR "/usr/share/kdom/guest"
#endif

namespace {

constexpr const char* kUsage =
    "usage: kdom run [--kernel PATH] [--initrd PATH] [--cmdline STR] [--memory MiB] [--vcpus N]\n"
    "                [--console stdio|pty|none|file:PATH]\n"
    "       kdom run --help\n"
    "       kdom balloon --control PATH set MIB | stats\n"
    "       kdom shutdown --control PATH [--wait SECONDS]\n"
    "       kdom --version\n";

std::string guest_dir() {
  const char* from_environment = std::getenv("KDOM_GUEST_DIR");
  return from_environment && *from_environment ? from_environment : KDOM_GUEST_DIR;
}

int run_command(const std::vector<std::string>& args) {
  auto parsed = kdom::cli::parse_run_options(args, {guest_dir()});
  if (parsed.outcome == kdom::cli::ParseOutcome::kHelpShown) {
    std::cout << parsed.help;
    return 0;
  }
  kdom::vmm::Domain domain(parsed.config);
  kdom::vmm::DomainExit exit = domain.run();
  kdom::log_line(exit.message);
  return kdom::vmm::exit_status(exit);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage;
    return 1;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "kdom " << KDOM_VERSION << "\n";
    return 0;
  }
  try {
    if (args[0] == "run") return run_command({args.begin() + 1, args.end()});
    if (args[0] == "balloon") return kdom::cli::balloon_command({args.begin() + 1, args.end()}, std::cout);
    if (args[0] == "shutdown") return kdom::cli::shutdown_command({args.begin() + 1, args.end()}, std::cout);
    throw kdom::Error("unknown command '" + args[0] + "' (try: kdom run --help)");
  } catch (const std::exception& error) {
    kdom::log_line(std::string("error: ") + error.what());
    return 1;
  }
}
