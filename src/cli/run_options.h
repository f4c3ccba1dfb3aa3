// Command-line parsing for `kdom run`: turns arguments into a VmConfig.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vmm/vm_config.h"

namespace kdom::cli {

struct Defaults {
  std::string guest_dir;  // holds vmlinuz and initramfs.cpio.gz (the default guest)
};

constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=-1";

enum class ParseOutcome { kRun, kHelpShown };

struct ParsedRun {
  ParseOutcome outcome = ParseOutcome::kRun;
  vmm::VmConfig config;
  std::string help;  // when outcome is kHelpShown
  // --ready-fd N: "ready\n" is written to N, which is then closed, right before the vCPUs start.
  std::optional<int> ready_fd;
  // --exit-file PATH: why the domain stopped, as JSON (vmm::write_exit_file); empty: none.
  std::string exit_file;
  // --restore FILE: the domain comes from a saved one (kdom save) instead of a boot. Its
  // config is the saved one unless --config gives another (kdomd does: new sockets and TAPs);
  // --control and --console, when given, replace the saved ones. --paused: it starts paused
  // (with --restore or --incoming-fd only).
  std::optional<std::string> restore;
  // --incoming-fd N: the same from a snapshot stream on the inherited fd N (a live migration's
  // destination), read up to its End record and no further, then closed; the disks start
  // without their image locks (Domain::RestoreSource::kIncomingMigration). What may be given
  // with it is what may be given with --restore (not --restore itself).
  std::optional<int> incoming_fd;
  bool config_given = false;
  bool paused = false;
  std::optional<std::string> control_override;
  std::optional<vmm::ConsoleConfig> console_override;
};

// `args` excludes the program name and the "run" word. Throws Error with one line naming
// the problem (unknown option, bad number, bad console...). With --config FILE (a JSON VmConfig
// document, "-" for stdin) the domain comes whole from the file and no other domain option
// may be given.
ParsedRun parse_run_options(const std::vector<std::string>& args, const Defaults& defaults);

}  // namespace kdom::cli
