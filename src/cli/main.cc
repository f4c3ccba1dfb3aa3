// kdom: the command line. `kdom run` boots one domain in the foreground; `kdom balloon` and
// `kdom shutdown --control` act on such a domain through its control socket; the xl-style verbs
// (create, list, ...) are clients of kdomd's HTTP API on its Unix socket (--socket PATH, or
// $KDOM_SOCKET, or /run/kdom/kdomd.sock).
#include <signal.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "cli/api_client.h"
#include "cli/balloon_command.h"
#include "cli/run_command.h"
#include "cli/shutdown_command.h"
#include "cli/xl_commands.h"

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
    "       kdom run --restore FILE [--paused] [--control PATH] [--console ...] [--config FILE]\n"
    "       kdom run --incoming-fd N [--paused] [--control PATH] [--console ...] [--config FILE]\n"
    "       kdom run --help\n"
    "       kdom balloon --control PATH set MIB | stats\n"
    "       kdom shutdown --control PATH [--wait SECONDS]\n"
    "       kdom save [-c] [-p] --control PATH FILE\n"
    "       kdom --version\n"
    "The domains of kdomd (DOM: a name or an id), as with xl; each verb has --help:\n"
    "       kdom [--socket PATH] create [-p] [-c] [-n] CFG [key=value...]\n"
    "       kdom [--socket PATH] list [-l] [DOM...]\n"
    "       kdom [--socket PATH] info\n"
    "       kdom [--socket PATH] destroy | pause | unpause | reboot DOM\n"
    "       kdom [--socket PATH] shutdown [-w] [-a] [DOM]\n"
    "       kdom [--socket PATH] rename DOM NEWNAME\n"
    "       kdom [--socket PATH] domid NAME | domname ID\n"
    "       kdom [--socket PATH] uptime [DOM...]\n"
    "       kdom [--socket PATH] console [--log | --follow] DOM   (Ctrl-] detaches)\n"
    "       kdom [--socket PATH] mem-set DOM MEM   (MEM: a number with b, k, m, g or t; no unit: KiB)\n"
    "       kdom [--socket PATH] events [--domain DOM] [--json] [--count N]   (as virsh event --loop)\n"
    "       kdom [--socket PATH] store read PATH | write PATH VALUE | ls [PATH] | rm PATH\n"
    "                                 | chmod PATH PERM... | watch [--count N] PATH   (as xenstore-*)\n"
    "       kdom [--socket PATH] vcpu-list [DOM...] | vcpu-pin DOM VCPU|all CPUS\n"
    "       kdom [--socket PATH] top [-b] [-d SECONDS] [-i ITERATIONS] [-s COLUMN]   (as xentop)\n"
    "       kdom [--socket PATH] block-attach DOM DISK-SPEC | block-detach [-f] [-w S] DOM VDEV | block-list DOM...\n"
    "       kdom [--socket PATH] network-attach DOM VIF-SPEC | network-detach [-f] [-w S] DOM DEVID|MAC\n"
    "                                 | network-list DOM...   (specs as xl.cfg's disk= and vif= items)\n"
    "       kdom [--socket PATH] save [-c] [-p] DOM FILE | restore [-p] FILE [key=value...]\n"
    "       kdom [--socket PATH] migrate [--downtime-ms N] [--max-bandwidth MIB] [--json] DOM HOST[:PORT]\n"
    "                                 | migrate --cancel DOM   (HOST localhost: a new domain on this host)\n"
    "kdomd's socket: --socket PATH, else $KDOM_SOCKET, else /run/kdom/kdomd.sock\n";

std::string guest_dir() {
  const char* from_environment = std::getenv("KDOM_GUEST_DIR");
  return from_environment && *from_environment ? from_environment : KDOM_GUEST_DIR;
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
    // `kdom --socket PATH VERB ...`: which kdomd the xl-style verbs talk to.
    std::string socket_path = kdom::cli::kdomd_socket_path_from_environment();
    if (args[0] == "--socket" || args[0].rfind("--socket=", 0) == 0) {
      if (args[0] == "--socket") {
        if (args.size() < 2) throw kdom::Error("--socket needs the path of kdomd's socket");
        socket_path = args[1];
        args.erase(args.begin(), args.begin() + 2);
      } else {
        socket_path = args[0].substr(9);
        args.erase(args.begin());
      }
      if (args.empty()) throw kdom::Error("--socket needs a command after it (try: kdom --help)");
    }
    if (args[0] == "run") return kdom::cli::run_command({args.begin() + 1, args.end()}, guest_dir());
    if (args[0] == "balloon") return kdom::cli::balloon_command({args.begin() + 1, args.end()}, std::cout);
    if (kdom::cli::is_xl_verb(args[0])) {
      const kdom::cli::ApiClient client(socket_path);
      kdom::cli::XlIo io{std::cout, std::cerr};
      io.err_is_terminal = ::isatty(STDERR_FILENO) == 1;
      return kdom::cli::xl_command(args[0], {args.begin() + 1, args.end()}, client, io);
    }
    throw kdom::Error("unknown command '" + args[0] + "' (try: kdom --help)");
  } catch (const std::exception& error) {
    kdom::log_line(std::string("error: ") + error.what());
    return 1;
  }
}
