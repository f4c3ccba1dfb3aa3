// `kdom run` options, parsed with CLI11.
#include "cli/run_options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "base/error.h"
#include "vmm/vm_config_json.h"

namespace kdom::cli {

namespace {

// The VmConfig in a JSON document at `path` ("-": standard input).
vmm::VmConfig read_config_document(const std::string& path) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream file(path);
    if (!file) throw Error("cannot read --config '" + path + "'");
    std::ostringstream contents;
    contents << file.rdbuf();
    text = contents.str();
  }
  nlohmann::json document = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) throw Error("--config '" + path + "' is not valid JSON");
  try {
    return vmm::vm_config_from_json(document);
  } catch (const Error& error) {
    throw Error("--config '" + path + "': " + error.what());
  }
}

}  // namespace

ParsedRun parse_run_options(const std::vector<std::string>& args, const Defaults& defaults) {
  CLI::App app{"Boot one domain in the foreground; its serial console is on stdio by default.", "kdom run"};
  ParsedRun parsed;
  auto& config = parsed.config;
  std::string kernel, initrd, console = "stdio";
  std::string cmdline;
  bool cmdline_given = false;
  app.add_option("--kernel", kernel, "bzImage or ELF vmlinux (default: the built-in guest in " + defaults.guest_dir + ")");
  app.add_option("--initrd", initrd, "initial ramdisk");
  app.add_option_function<std::string>(
      "--cmdline", [&](const std::string& value) { cmdline = value, cmdline_given = true; },
      std::string("kernel command line (default: \"") + kDefaultCmdline + "\")");
  app.add_option("--memory", config.memory_mib, "guest RAM in MiB (default 256)");
  app.add_option("--vcpus", config.vcpus, "number of vCPUs (default 1)");
  app.add_option("--console", console, "stdio, pty, none or file:PATH (default stdio)");
  std::vector<std::string> disks;
  std::string hvc, vsock;
  app.add_option("--hvc", hvc, "virtio-console (hvc0): stdio, pty, none or file:PATH [,id=NAME] (default: no device)");
  app.add_option("--vsock", vsock, "virtio-vsock: cid=N,socket=PATH[,id=ID] (host side on Unix socket PATH)");
  app.add_flag("--rng", config.entropy, "add a virtio-rng device (entropy from the host's getrandom)");
  std::string balloon;
  bool balloon_given = false;
  app.add_option_function<std::string>(
      "--balloon", [&](const std::string& value) { balloon = value, balloon_given = true; },
      "virtio-balloon: [target=MIB][,stats=SECONDS][,deflate-on-oom][,free-page-reporting][,id=ID]")
      ->expected(0, 1);
  app.add_option("--control", config.control_path, "listen for control requests (kdom balloon) on this Unix socket");
  app.add_option("--disk", disks, "virtio-blk disk: PATH[,ro][,shared][,serial=ID][,id=ID][,queues=N][,bw=BYTES][,iops=N][,poll=US] (repeatable; shared lets other domains write to the image too; bw and iops are per-second limits, poll the longest adaptive polling window, default 32)")->take_all();
  std::vector<std::string> nets;
  std::string config_file;
  auto* config_option =
      app.add_option("--config", config_file, "the whole domain as a JSON VmConfig document ('-': stdin); "
                                              "no other domain option may be given with it");
  int ready_fd = -1;
  app.add_option("--ready-fd", ready_fd, "write \"ready\\n\" to this fd, then close it, when the domain is built")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--exit-file", parsed.exit_file,
                 "when the domain stops, write why to this file as JSON (atomically: PATH.tmp, then renamed)");
  app.add_option("--net", nets, "virtio-net on a TAP: tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX][,id=ID][,bw=BYTES][,pps=N] (repeatable; bw and pps are per-second limits each way)")
      ->take_all();

  std::string restore;
  auto* restore_option = app.add_option(
      "--restore", restore,
      "resume a domain saved with kdom save from this file instead of booting (its saved config; "
      "--config, --control and --console may replace it)");
  int incoming_fd = -1;
  auto* incoming_option =
      app.add_option("--incoming-fd", incoming_fd,
                     "receive a live-migrating domain: read its snapshot stream from this inherited fd "
                     "(a socket or pipe) up to its end record and no further, then close the fd; its disks "
                     "start without their image locks (the control socket's disk-locks op takes them); "
                     "options as for --restore")
          ->check(CLI::Validator(
              [](std::string& value) -> std::string {
                // Not NonNegativeNumber: its message for a file name ("not in range 0 to 1.8e308")
                // would not say that the stream is an inherited fd.
                if (value.empty() || value.size() > 9 || value.find_first_not_of("0123456789") != std::string::npos)
                  return "'" + value + "' is not a file descriptor number (the stream comes on an inherited fd)";
                return {};
              },
              "FD"));
  app.add_flag("--paused", parsed.paused, "with --restore or --incoming-fd: leave the domain paused");

  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 consumes from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    parsed.outcome = ParseOutcome::kHelpShown;
    parsed.help = app.help();
    return parsed;
  } catch (const CLI::ParseError& error) {
    std::string message = error.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    throw Error(message);
  }

  if (ready_fd >= 0) parsed.ready_fd = ready_fd;
  const bool restoring = restore_option->count() > 0, incoming = incoming_option->count() > 0;
  if (restoring && incoming) throw Error("--restore and --incoming-fd cannot both be given: the domain comes from one");
  if (restoring || incoming) {
    const std::string source = restoring ? "--restore takes the domain from the saved file"
                                         : "--incoming-fd takes the domain from the incoming stream";
    for (const CLI::Option* option : app.get_options()) {
      const std::string name = option->get_name();
      if (option->count() > 0 && name != "--restore" && name != "--incoming-fd" && name != "--config" &&
          name != "--ready-fd" && name != "--exit-file" && name != "--paused" && name != "--control" &&
          name != "--console")
        throw Error(source + ": " + name + " cannot be given with it");
    }
    if (incoming) {
      // 0-2 are the serial console's (--console stdio) and carry kdom's own messages: a stream
      // there would be mixed up with them.
      if (incoming_fd <= 2)
        throw Error("--incoming-fd " + std::to_string(incoming_fd) +
                    " is standard input, output or error: pass the stream on fd 3 or above");
      if (parsed.ready_fd == incoming_fd)
        throw Error("--incoming-fd and --ready-fd cannot be the same fd (" + std::to_string(incoming_fd) + ")");
      parsed.incoming_fd = incoming_fd;
    } else {
      parsed.restore = restore;
    }
    parsed.config_given = config_option->count() > 0;
    if (parsed.config_given) parsed.config = read_config_document(config_file);
    if (app.get_option("--control")->count() > 0) parsed.control_override = config.control_path;
    if (app.get_option("--console")->count() > 0) parsed.console_override = vmm::parse_console(console);
    return parsed;
  }
  if (parsed.paused) throw Error("--paused is for --restore and --incoming-fd");
  if (config_option->count() > 0) {
    for (const CLI::Option* option : app.get_options()) {
      const std::string name = option->get_name();
      if (option->count() > 0 && name != "--config" && name != "--ready-fd" && name != "--exit-file")
        throw Error("--config gives the whole domain: " + name + " cannot be given with it");
    }
    config = read_config_document(config_file);
    return parsed;
  }

  if (kernel.empty()) {
    config.kernel_path = defaults.guest_dir + "/vmlinuz";
    if (initrd.empty()) initrd = defaults.guest_dir + "/initramfs.cpio.gz";
  } else {
    config.kernel_path = kernel;
  }
  if (!initrd.empty()) config.initrd_path = initrd;
  config.cmdline = cmdline_given ? cmdline : kDefaultCmdline;
  config.console = vmm::parse_console(console);
  if (!hvc.empty()) config.hvc = vmm::parse_hvc(hvc);
  if (!vsock.empty()) config.vsock = vmm::parse_vsock(vsock);
  for (const auto& disk : disks) config.disks.push_back(vmm::parse_disk(disk));
  if (balloon_given) config.balloon = vmm::parse_balloon(balloon);
  for (const auto& net : nets) config.nets.push_back(vmm::parse_net(net));
  vmm::validate(config);
  return parsed;
}

}  // namespace kdom::cli
