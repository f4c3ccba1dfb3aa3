// `kdom run` options, parsed with CLI11.
#include "cli/run_options.h"

#include <CLI/CLI.hpp>
#include <algorithm>

#include "base/error.h"

namespace kdom::cli {

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
  app.add_option("--disk", disks, "virtio-blk disk: PATH[,ro][,serial=ID][,id=ID][,queues=N][,bw=BYTES][,iops=N][,poll=US] (repeatable; bw and iops are per-second limits, poll the longest adaptive polling window, default 32)")->take_all();
  std::vector<std::string> nets;
  app.add_option("--net", nets, "virtio-net on a TAP: tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX][,id=ID][,bw=BYTES][,pps=N] (repeatable; bw and pps are per-second limits each way)")
      ->take_all();

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
