// The xl.cfg(5) parser: text in, a DomainConfig out. KEY=VALUE settings separated by newlines
// or ';', strings in single or double quotes, numbers, lists [...] across lines with trailing
// commas, '#' comments. Every error names the file, the line and what is wrong.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"
#include "config/domain_config.h"

namespace kdom::config {

// A syntax error, an unknown or unsupported key, or a bad value: "FILE:LINE: what is wrong".
class XlCfgError : public Error {
 public:
  using Error::Error;
};

// `file_name` is only used in messages. Relative kernel/ramdisk/disk paths are kept as they are
// (the caller resolves them against the file's directory, as xl does with its cwd).
DomainConfig parse_xl_cfg(const std::string& text, const std::string& file_name);

// Reads and parses a file; relative paths in it are made absolute against the file's directory.
DomainConfig parse_xl_cfg_file(const std::string& path);

// The same with `key=value` overrides from `kdom create`'s command line (see apply_xl_overrides),
// merged before the config is built: an override replaces the file's setting of the same key,
// and also the other spelling of the command line (cmdline replaces root and extra; root or
// extra replaces cmdline). Relative paths in overrides are made absolute against the current
// directory (parse_xl_cfg_file) or kept (parse_xl_cfg). Prefer these to apply_xl_overrides.
DomainConfig parse_xl_cfg(const std::string& text, const std::string& file_name,
                          const std::vector<std::string>& overrides);
DomainConfig parse_xl_cfg_file(const std::string& path, const std::vector<std::string>& overrides);

// One disk or vif spec as block-attach and network-attach take it (the syntax of an item of
// the file's disk= or vif= list); a relative target is made absolute against `base_dir`.
// Errors begin "command line: ".
DiskSpec parse_disk_spec(const std::string& text, const std::string& base_dir);
VifSpec parse_vif_spec(const std::string& text);

// Applies `key=value` overrides given on `kdom create`'s command line after the file, in the same
// syntax as a line of the file (e.g. `memory=512`, `name="web"`). Errors name "command line".
// `root` and `extra` are refused here (the file's split of the command line is gone by now): give
// `cmdline`, or use parse_xl_cfg_file(path, overrides). The result is validated.
void apply_xl_overrides(DomainConfig& config, const std::vector<std::string>& overrides);

// Checks `key=value` overrides as apply_xl_overrides reads them (the syntax, known keys, no key
// twice, each value on its own), without the config they will apply to: a client refuses a
// malformed one before it asks kdomd (kdom restore). What depends on that config (validate,
// `balloon_stats` without a balloon) is left to apply_xl_overrides. Errors name "command line".
void check_xl_overrides(const std::vector<std::string>& overrides);

}  // namespace kdom::config
