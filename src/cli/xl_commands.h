// The xl-style verbs of `kdom` (create, list, info, destroy, shutdown, reboot, pause, unpause,
// rename, domid, domname, uptime, console, mem-set, save, restore, migrate...): each parses its arguments, makes one or a
// few requests to kdomd's HTTP API through an ApiClient, and prints what xl would print. DOM is
// a domain's name or id everywhere.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/api_client.h"

namespace kdom::cli {

// Where a verb's output goes. `console` copies bytes between the terminal fds and the domain.
struct XlIo {
  std::ostream& out;
  std::ostream& err;
  int terminal_in = STDIN_FILENO;
  int terminal_out = STDOUT_FILENO;
  // `err` is a terminal: a long operation (a save) may draw its progress there.
  bool err_is_terminal = false;
};

// True for the words xl_command() handles.
bool is_xl_verb(const std::string& word);

// Runs one verb. `args` excludes the program name and the verb. Returns the exit status (0;
// `--help` prints the verb's help to io.out). Throws Error with one line on bad arguments or a
// failed request. `kdom shutdown --control PATH ...` goes to the `kdom run` control socket
// instead (shutdown_command).
int xl_command(const std::string& verb, const std::vector<std::string>& args, const ApiClient& client, XlIo& io);

// xl's memory size (mem-set): a whole number with an optional unit suffix b, k, m, g or t
// (either case; no suffix: KiB), as MiB, rounded down. Throws Error for anything else or less
// than 1 MiB.
uint64_t parse_xl_memory_mib(const std::string& text);

// xl list's state column for a DomainInfo state: six positions "rbpscd", a dash where the flag
// is off ("r-----" running, "--p---" paused, "---s--" shut down, "----c-" crashed, "-----d"
// dying, "------" starting).
std::string xl_state_letters(const std::string& state);

// xl uptime's format: "H:MM:SS" with the hour right-aligned in two columns, or
// "N day(s), H:MM:SS".
std::string xl_uptime_text(double seconds);

// Copies bytes between the user's terminal and an upgraded console connection until the
// connection ends or, on a terminal (put in raw mode meanwhile), the user types Ctrl-].
void attach_console(UpgradedConnection connection, int terminal_in, int terminal_out);

}  // namespace kdom::cli
