// Tests of `kdom run` option parsing: defaults (the built-in guest), every option, --help,
// and the errors for unknown options and bad values.
#include "cli/run_options.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "vmm/vm_config_json.h"

namespace kdom::cli {
namespace {

const Defaults kDefaults{"/opt/kdom/guest"};

ParsedRun parse(const std::vector<std::string>& args) { return parse_run_options(args, kDefaults); }

std::string error_of(const std::vector<std::string>& args) {
  try {
    parse(args);
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(RunOptions, Defaults) {
  auto parsed = parse({});
  EXPECT_EQ(parsed.outcome, ParseOutcome::kRun);
  const auto& config = parsed.config;
  EXPECT_EQ(config.kernel_path, "/opt/kdom/guest/vmlinuz");
  EXPECT_EQ(config.initrd_path, std::optional<std::string>("/opt/kdom/guest/initramfs.cpio.gz"));
  EXPECT_EQ(config.cmdline, kDefaultCmdline);
  EXPECT_EQ(config.memory_mib, 256u);
  EXPECT_EQ(config.vcpus, 1u);
  EXPECT_EQ(config.console.kind, vmm::ConsoleKind::kStdio);
}

TEST(RunOptions, EveryOption) {
  auto parsed = parse({"--kernel", "/k/bzImage", "--initrd", "/k/initrd.img", "--cmdline", "console=ttyS0 quiet",
                       "--memory", "1024", "--vcpus", "4", "--console", "pty"});
  ASSERT_EQ(parsed.outcome, ParseOutcome::kRun);
  const auto& config = parsed.config;
  EXPECT_EQ(config.kernel_path, "/k/bzImage");
  EXPECT_EQ(config.initrd_path, std::optional<std::string>("/k/initrd.img"));
  EXPECT_EQ(config.cmdline, "console=ttyS0 quiet");
  EXPECT_EQ(config.memory_mib, 1024u);
  EXPECT_EQ(config.vcpus, 4u);
  EXPECT_EQ(config.console.kind, vmm::ConsoleKind::kPty);
}

TEST(RunOptions, EqualsSyntax) {
  auto config = parse({"--memory=512", "--vcpus=2", "--console=none"}).config;
  EXPECT_EQ(config.memory_mib, 512u);
  EXPECT_EQ(config.vcpus, 2u);
  EXPECT_EQ(config.console.kind, vmm::ConsoleKind::kNone);
}

TEST(RunOptions, ValuesGoToTheirOwnOptions) {
  // Options in another order: each value still lands on the option before it.
  auto config = parse({"--vcpus", "2", "--cmdline", "quiet", "--memory", "128", "--kernel", "/k"}).config;
  EXPECT_EQ(config.vcpus, 2u);
  EXPECT_EQ(config.memory_mib, 128u);
  EXPECT_EQ(config.cmdline, "quiet");
  EXPECT_EQ(config.kernel_path, "/k");
}

TEST(RunOptions, RepeatedOptionIsAnError) {
  auto message = error_of({"--vcpus", "2", "--vcpus", "3"});
  EXPECT_NE(message.find("--vcpus"), std::string::npos) << message;
}

TEST(RunOptions, KernelWithoutInitrdHasNoInitrd) {
  auto config = parse({"--kernel", "/k/vmlinux"}).config;
  EXPECT_EQ(config.kernel_path, "/k/vmlinux");
  EXPECT_FALSE(config.initrd_path.has_value());
}

TEST(RunOptions, InitrdWithDefaultKernel) {
  auto config = parse({"--initrd", "/i.cpio"}).config;
  EXPECT_EQ(config.kernel_path, "/opt/kdom/guest/vmlinuz");
  EXPECT_EQ(config.initrd_path, std::optional<std::string>("/i.cpio"));
}

TEST(RunOptions, EmptyCmdlineIsKept) {
  auto config = parse({"--cmdline", ""}).config;
  EXPECT_EQ(config.cmdline, "");
}

TEST(RunOptions, HelpIsShown) {
  auto parsed = parse({"--help"});
  EXPECT_EQ(parsed.outcome, ParseOutcome::kHelpShown);
  EXPECT_NE(parsed.help.find("--memory"), std::string::npos);
  EXPECT_NE(parsed.help.find("--console"), std::string::npos);
  EXPECT_EQ(parse({"-h"}).outcome, ParseOutcome::kHelpShown);
}

TEST(RunOptions, UnknownOptionIsAnError) {
  auto message = error_of({"--bogus"});
  EXPECT_NE(message.find("bogus"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "the message must be one line";
}

TEST(RunOptions, StrayArgumentIsAnError) { EXPECT_THROW(parse({"vmlinuz"}), Error); }

TEST(RunOptions, MissingValueIsAnError) { EXPECT_THROW(parse({"--memory"}), Error); }

TEST(RunOptions, ZeroMemoryIsAnError) {
  auto message = error_of({"--memory", "0"});
  EXPECT_NE(message.find("--memory"), std::string::npos) << message;
}

TEST(RunOptions, NonNumericMemoryIsAnError) {
  EXPECT_THROW(parse({"--memory", "abc"}), Error);
  EXPECT_THROW(parse({"--memory", "-5"}), Error);
}

TEST(RunOptions, ZeroVcpusIsAnError) {
  auto message = error_of({"--vcpus", "0"});
  EXPECT_NE(message.find("--vcpus"), std::string::npos) << message;
}

TEST(RunOptions, TooManyVcpusIsAnError) {
  EXPECT_NO_THROW(parse({"--vcpus", "255"}));
  EXPECT_THROW(parse({"--vcpus", "256"}), Error);
}

TEST(RunOptions, BogusConsoleIsAnError) {
  auto message = error_of({"--console", "bogus"});
  EXPECT_NE(message.find("bogus"), std::string::npos) << message;
  EXPECT_THROW(parse({"--console", "file:"}), Error);
}

TEST(RunOptions, FileConsole) {
  auto config = parse({"--console", "file:/tmp/x"}).config;
  EXPECT_EQ(config.console.kind, vmm::ConsoleKind::kFile);
  EXPECT_EQ(config.console.path, "/tmp/x");
}

}  // namespace
}  // namespace kdom::cli

namespace kdom::cli {
namespace {

TEST(RunOptions, VirtioDevices) {
  auto none = parse_run_options({}, Defaults{"/guest"}).config;
  EXPECT_FALSE(none.entropy);
  EXPECT_TRUE(none.disks.empty());
  auto config = parse_run_options({"--rng", "--disk", "/d/a.img,ro,serial=abc", "--disk", "/d/b.img"},
                                  Defaults{"/guest"}).config;
  EXPECT_TRUE(config.entropy);
  ASSERT_EQ(config.disks.size(), 2u);
  EXPECT_EQ(config.disks[0].path, "/d/a.img");
  EXPECT_TRUE(config.disks[0].read_only);
  EXPECT_EQ(config.disks[0].serial, "abc");
  EXPECT_EQ(config.disks[1].path, "/d/b.img");
  EXPECT_FALSE(config.disks[1].read_only);
  EXPECT_THROW(parse_run_options({"--disk", "/d/a.img,bogus"}, Defaults{"/guest"}), Error);
  EXPECT_THROW(parse_run_options({"--disk", "/d/a.img", "--disk", "/d/a.img"}, Defaults{"/guest"}), Error);
  EXPECT_THROW(parse_run_options({"--disk", "/d/a.img,serial=123456789012345678901"}, Defaults{"/guest"}), Error);
}

TEST(RunOptions, DiskQueuesIdAndRateLimits) {
  auto config =
      parse_run_options({"--disk", "/d/a.img,id=data,queues=4,bw=10M,iops=2000,poll=200"}, Defaults{"/guest"}).config;
  ASSERT_EQ(config.disks.size(), 1u);
  EXPECT_EQ(config.disks[0].poll_us, 200u);
  EXPECT_EQ(config.disks[0].id, "data");
  EXPECT_EQ(config.disks[0].queues, 4);
  EXPECT_EQ(config.disks[0].rate_limit.bytes_per_second, 10u << 20);
  EXPECT_EQ(config.disks[0].rate_limit.ops_per_second, 2000u);
  try {
    parse_run_options({"--disk", "/d/a.img,id=x", "--disk", "/d/b.img,id=x"}, Defaults{"/guest"});
    ADD_FAILURE() << "a device id used twice was accepted";
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "--disk: device id 'x' is used twice");
  }
  auto plain = parse_run_options({"--disk", "/d/a.img"}, Defaults{"/guest"}).config;
  EXPECT_EQ(plain.disks[0].queues, 1);
  EXPECT_TRUE(plain.disks[0].rate_limit.unlimited());
  EXPECT_EQ(plain.disks[0].poll_us, vmm::kDefaultDiskPollMicros);
  EXPECT_EQ(parse_run_options({"--disk", "/d/a.img,poll=0"}, Defaults{"/guest"}).config.disks[0].poll_us, 0u);
  for (const char* bad : {"/d/a.img,queues=0", "/d/a.img,queues=65", "/d/a.img,queues=x", "/d/a.img,bw=0",
                          "/d/a.img,bw=1T", "/d/a.img,iops=-3", "/d/a.img,iops=", "/d/a.img,id=",
                          "/d/a.img,poll=1001", "/d/a.img,poll=-1", "/d/a.img,poll=1ms"}) {
    try {
      parse_run_options({"--disk", bad}, Defaults{"/guest"});
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(bad), std::string::npos) << error.what();
    }
  }
}

TEST(RunOptions, NetRateLimits) {
  auto config = parse_run_options({"--net", "tap=t0,bw=1M,pps=5000"}, Defaults{"/guest"}).config;
  ASSERT_EQ(config.nets.size(), 1u);
  EXPECT_EQ(config.nets[0].rate_limit.bytes_per_second, 1u << 20);
  EXPECT_EQ(config.nets[0].rate_limit.ops_per_second, 5000u);
  EXPECT_THROW(parse_run_options({"--net", "tap=t0,pps=0"}, Defaults{"/guest"}), Error);
  EXPECT_THROW(parse_run_options({"--net", "tap=t0,bw=lots"}, Defaults{"/guest"}), Error);
}

// A JSON config document in a temporary file, removed at the end of the test.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text)
      : path_((std::filesystem::temp_directory_path() /
               ("kdom-run-options-" + std::to_string(getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".json"))
                  .string()) {
    std::ofstream(path_) << text;
  }
  ~ConfigFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(RunOptions, ConfigFileGivesTheWholeDomain) {
  vmm::VmConfig wanted;
  wanted.kernel_path = "/k/vmlinux";
  wanted.memory_mib = 2048;
  wanted.vcpus = 2;
  wanted.console = {vmm::ConsoleKind::kSocket, "/run/c.sock"};
  wanted.disks.push_back(vmm::parse_disk("/d/root.img,queues=2"));
  ConfigFile file(vmm::to_json(wanted).dump());
  auto parsed = parse({"--config", file.path(), "--ready-fd", "7", "--exit-file", "/run/exit.json"});
  EXPECT_EQ(parsed.config.kernel_path, "/k/vmlinux");
  EXPECT_EQ(parsed.config.memory_mib, 2048u);
  EXPECT_EQ(parsed.config.vcpus, 2u);
  EXPECT_EQ(parsed.config.console.kind, vmm::ConsoleKind::kSocket);
  ASSERT_EQ(parsed.config.disks.size(), 1u);
  EXPECT_EQ(parsed.config.disks[0].queues, 2);
  EXPECT_EQ(parsed.ready_fd, std::optional<int>(7));
  EXPECT_EQ(parsed.exit_file, "/run/exit.json");
}

TEST(RunOptions, ConfigFileExcludesDomainOptions) {
  ConfigFile file(R"({"kernel_path":"/k/vmlinux"})");
  for (const std::vector<std::string>& extra : std::vector<std::vector<std::string>>{
           {"--kernel", "/k/other"}, {"--memory", "512"}, {"--disk", "/d/a.img"}, {"--rng"}, {"--balloon"}}) {
    std::vector<std::string> args = {"--config", file.path()};
    args.insert(args.end(), extra.begin(), extra.end());
    EXPECT_EQ(error_of(args), "--config gives the whole domain: " + extra[0] + " cannot be given with it");
  }
}

TEST(RunOptions, ConfigFileErrorsNameTheFile) {
  ConfigFile bad_json("{not json");
  EXPECT_EQ(error_of({"--config", bad_json.path()}), "--config '" + bad_json.path() + "' is not valid JSON");
  ConfigFile bad_key(R"({"kernel_path":"/k/vmlinux","disks":[{"path":"/d","queues":"2"}]})");
  EXPECT_EQ(error_of({"--config", bad_key.path()}),
            "--config '" + bad_key.path() + "': config: disks[0].queues must be a number");
  EXPECT_NE(error_of({"--config", "/no/such/config.json"}).find("cannot read --config"), std::string::npos);
}

TEST(RunOptions, ReadyFdAndExitFileDefaultToNone) {
  auto parsed = parse({});
  EXPECT_FALSE(parsed.ready_fd);
  EXPECT_TRUE(parsed.exit_file.empty());
  EXPECT_NE(error_of({"--ready-fd", "-3"}), "(no error)");
  EXPECT_NE(error_of({"--ready-fd", "x"}), "(no error)");
}

TEST(RunOptions, ConsoleOnASocket) {
  auto config = parse({"--console", "socket:/run/c.sock"}).config;
  EXPECT_EQ(config.console.kind, vmm::ConsoleKind::kSocket);
  EXPECT_EQ(config.console.path, "/run/c.sock");
  EXPECT_NE(error_of({"--console", "socket:"}), "(no error)");
  EXPECT_NE(error_of({"--hvc", "socket:/run/h.sock"}), "(no error)");
}

// kdomd's command line for a live migration's destination: the stream on an inherited fd, the
// rest as for --restore.
TEST(RunOptions, IncomingFdTakesWhatRestoreTakes) {
  ConfigFile file(R"({"kernel_path":"/k/vmlinux","memory_mib":512})");
  auto parsed = parse({"--config", file.path(), "--ready-fd", "4", "--exit-file", "/run/exit.json", "--incoming-fd",
                       "3", "--paused"});
  EXPECT_EQ(parsed.incoming_fd, std::optional<int>(3));
  EXPECT_FALSE(parsed.restore);
  EXPECT_TRUE(parsed.paused);
  EXPECT_TRUE(parsed.config_given);
  EXPECT_EQ(parsed.config.memory_mib, 512u);
  EXPECT_EQ(parsed.ready_fd, std::optional<int>(4));
  parsed = parse({"--incoming-fd", "9", "--control", "/run/c.sock", "--console", "none"});
  EXPECT_EQ(parsed.incoming_fd, std::optional<int>(9));
  EXPECT_FALSE(parsed.paused);
  EXPECT_FALSE(parsed.config_given);
  EXPECT_EQ(parsed.control_override, std::optional<std::string>("/run/c.sock"));
  ASSERT_TRUE(parsed.console_override);
  EXPECT_EQ(parsed.console_override->kind, vmm::ConsoleKind::kNone);
  EXPECT_FALSE(parse({}).incoming_fd);
}

TEST(RunOptions, IncomingFdMustBeAnFdNumber) {
  for (const char* value : {"-1", "x", "3x", "/tmp/stream.snap", ""})
    EXPECT_NE(error_of({"--incoming-fd", value}), "(no error)") << value;
  EXPECT_NE(error_of({"--incoming-fd"}), "(no error)");
  for (const char* value : {"0", "1", "2"})
    EXPECT_EQ(error_of({"--incoming-fd", value}),
              std::string("--incoming-fd ") + value + " is standard input, output or error: pass the stream on fd 3 or above");
  EXPECT_EQ(error_of({"--incoming-fd", "3", "--ready-fd", "3"}), "--incoming-fd and --ready-fd cannot be the same fd (3)");
}

TEST(RunOptions, IncomingFdExcludesDomainOptionsAndRestore) {
  for (const std::vector<std::string>& extra : std::vector<std::vector<std::string>>{
           {"--kernel", "/k/other"}, {"--memory", "512"}, {"--disk", "/d/a.img"}, {"--net", "tap=t0"}, {"--rng"},
           {"--cmdline", "x"}}) {
    std::vector<std::string> args = {"--incoming-fd", "3"};
    args.insert(args.end(), extra.begin(), extra.end());
    EXPECT_EQ(error_of(args), "--incoming-fd takes the domain from the incoming stream: " + extra[0] +
                                  " cannot be given with it");
  }
  EXPECT_EQ(error_of({"--incoming-fd", "3", "--restore", "/s/web.snap"}),
            "--restore and --incoming-fd cannot both be given: the domain comes from one");
  EXPECT_EQ(error_of({"--paused"}), "--paused is for --restore and --incoming-fd");
}

}  // namespace
}  // namespace kdom::cli
