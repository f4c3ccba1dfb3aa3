// Tests of the xl.cfg(5) parser and DomainConfig: full configs in xl's syntax (lists across
// lines, comments, both quotes, ';'), the disk and vif forms, cmdline assembly, every kind of
// error with its FILE:LINE, command-line overrides (and their check without a config), file
// reading with relative paths, the DomainConfig checks and its JSON form both ways.
#include "config/xl_cfg.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace kdom::config {
namespace {

constexpr const char* kFullConfig = R"(# A Xen PVH guest, as an xl user writes it.
name = "web-1"
uuid = '3f2504e0-4f89-11d3-9a0c-0305e82c3301'
type = "pvh"
memory = 1024 ; maxmem = 2048
vcpus = 2
maxvcpus = 0x4
kernel = "/boot/vmlinuz"   # the guest's kernel
ramdisk = '/boot/initrd.img'
root = "/dev/xvda1 ro"
extra = "console=hvc0 quiet"
on_poweroff = "destroy"
on_reboot = 'restart'
on_crash = "rename-restart"
disk = [ '/img/web.img,raw,xvda,rw',
         "format=raw, vdev=xvdb, access=ro, target=/img/data,with,commas.img",   # key=value form
         # a comment between items
       ]
vif = [ 'mac=00:16:3e:01:02:03, bridge=xenbr0, rate=10Mb/s@20ms',
        'vifname=tap7,ip=10.0.0.7,rate=1MB/s,model=virtio-net,type=vif', ]
serial = "pty"
vsock = 42
rng = 1
balloon = 1; balloon_stats = 5
)";

std::string error_of(const std::string& text, const std::string& file_name = "guest.cfg") {
  try {
    parse_xl_cfg(text, file_name);
  } catch (const XlCfgError& error) {
    return error.what();
  }
  return "(no error)";
}

// A minimal valid file followed by `more`.
std::string with_basics(const std::string& more) { return "name = 'g'\nkernel = '/k'\n" + more; }

TEST(XlCfg, FullPvhConfig) {
  const DomainConfig config = parse_xl_cfg(kFullConfig, "web.cfg");
  EXPECT_EQ(config.name, "web-1");
  EXPECT_EQ(config.uuid, "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
  EXPECT_EQ(config.memory_mib, 1024u);
  EXPECT_EQ(config.maxmem_mib, 2048u);
  EXPECT_EQ(config.vcpus, 2u);
  EXPECT_EQ(config.maxvcpus, 4u);
  EXPECT_EQ(config.kernel, "/boot/vmlinuz");
  EXPECT_EQ(config.ramdisk, "/boot/initrd.img");
  EXPECT_EQ(config.cmdline, "root=/dev/xvda1 ro console=hvc0 quiet");
  EXPECT_EQ(config.on_poweroff, LifecycleAction::kDestroy);
  EXPECT_EQ(config.on_reboot, LifecycleAction::kRestart);
  EXPECT_EQ(config.on_crash, LifecycleAction::kRenameRestart);
  ASSERT_EQ(config.disks.size(), 2u);
  EXPECT_EQ(config.disks[0].target, "/img/web.img");
  EXPECT_EQ(config.disks[0].vdev, "xvda");
  EXPECT_FALSE(config.disks[0].read_only);
  EXPECT_EQ(config.disks[1].target, "/img/data,with,commas.img");
  EXPECT_EQ(config.disks[1].vdev, "xvdb");
  EXPECT_TRUE(config.disks[1].read_only);
  ASSERT_EQ(config.vifs.size(), 2u);
  EXPECT_EQ(config.vifs[0].mac, std::optional<std::string>("00:16:3e:01:02:03"));
  EXPECT_EQ(config.vifs[0].bridge, "xenbr0");
  EXPECT_EQ(config.vifs[0].rate_bytes_per_second, 1250000u);  // 10 megabits
  EXPECT_EQ(config.vifs[1].mac, std::nullopt);
  EXPECT_EQ(config.vifs[1].tap, "tap7");
  EXPECT_EQ(config.vifs[1].ip, "10.0.0.7");
  EXPECT_EQ(config.vifs[1].rate_bytes_per_second, 1000000u);
  EXPECT_EQ(config.vsock_cid, std::optional<uint64_t>(42));
  EXPECT_TRUE(config.rng);
  EXPECT_EQ(config.balloon_stats_seconds, std::optional<uint64_t>(5));
}

TEST(XlCfg, DefaultsForAMinimalFile) {
  const DomainConfig config = parse_xl_cfg(with_basics(""), "g.cfg");
  EXPECT_EQ(config.memory_mib, 128u);
  EXPECT_EQ(config.vcpus, 1u);
  EXPECT_EQ(config.cmdline, "");
  EXPECT_EQ(config.on_reboot, LifecycleAction::kRestart);
  EXPECT_TRUE(config.disks.empty());
  EXPECT_FALSE(config.rng);
  EXPECT_EQ(config.balloon_stats_seconds, std::nullopt);
  EXPECT_EQ(config.vsock_cid, std::nullopt);
}

TEST(XlCfg, HvmIsTheSameMachineAndBalloonWithoutStats) {
  const DomainConfig config = parse_xl_cfg(with_basics("type='hvm'\nballoon=1\n"), "g.cfg");
  EXPECT_EQ(config.balloon_stats_seconds, std::optional<uint64_t>(0));
}

TEST(XlCfg, CommandLineAssembly) {
  EXPECT_EQ(parse_xl_cfg(with_basics("cmdline = 'console=hvc0 root=/dev/vda'"), "g").cmdline,
            "console=hvc0 root=/dev/vda");
  EXPECT_EQ(parse_xl_cfg(with_basics("root = '/dev/vda'"), "g").cmdline, "root=/dev/vda");
  EXPECT_EQ(parse_xl_cfg(with_basics("extra = '  quiet  '"), "g").cmdline, "quiet");
  EXPECT_NE(error_of(with_basics("cmdline = 'quiet'\nroot = '/dev/vda'\n")).find("guest.cfg:4: 'root' cannot be combined"),
            std::string::npos);
}

TEST(XlCfg, DiskForms) {
  const DomainConfig config = parse_xl_cfg(with_basics("disk = ['/a.img', '/b.img,,xvdb,r', 'vdev=xvdc,target=/c.img', "
                                                       "'/d.img,raw,xvdd:disk,w,devtype=disk']"),
                                           "g");
  ASSERT_EQ(config.disks.size(), 4u);
  EXPECT_EQ(config.disks[0].target, "/a.img");
  EXPECT_EQ(config.disks[0].vdev, "");
  EXPECT_TRUE(config.disks[1].read_only);
  EXPECT_EQ(config.disks[1].vdev, "xvdb");
  EXPECT_EQ(config.disks[2].target, "/c.img");
  EXPECT_EQ(config.disks[2].vdev, "xvdc");
  EXPECT_EQ(config.disks[3].vdev, "xvdd");
  EXPECT_FALSE(config.disks[3].read_only);
  EXPECT_FALSE(config.disks[3].shared);
}

TEST(XlCfg, SharedDiskOnlyWhenAsked) {
  const DomainConfig config = parse_xl_cfg(with_basics("disk = ['/a.img,raw,xvda,rw,shared', 'shared,target=/b.img']"), "g");
  ASSERT_EQ(config.disks.size(), 2u);
  EXPECT_TRUE(config.disks[0].shared);
  EXPECT_FALSE(config.disks[0].read_only);
  EXPECT_TRUE(config.disks[1].shared);
  EXPECT_EQ(config.disks[1].target, "/b.img");
  EXPECT_EQ(to_json(config)["disks"][0]["shared"], true);
  EXPECT_TRUE(domain_config_from_json(to_json(config)).disks[0].shared);
  try {
    parse_xl_cfg(with_basics("disk = ['/a.img,shared,shared']"), "g");
    ADD_FAILURE() << "shared twice was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("'shared' is given twice"), std::string::npos) << error.what();
  }
}

TEST(XlCfg, VifRates) {
  const DomainConfig config =
      parse_xl_cfg(with_basics("vif = ['rate=100KB/s', 'rate=8Kb/s@50ms', 'rate=1GB/s', 'bridge=br0']"), "g");
  ASSERT_EQ(config.vifs.size(), 4u);
  EXPECT_EQ(config.vifs[0].rate_bytes_per_second, 100000u);
  EXPECT_EQ(config.vifs[1].rate_bytes_per_second, 1000u);
  EXPECT_EQ(config.vifs[2].rate_bytes_per_second, 1000000000u);
  EXPECT_EQ(config.vifs[3].rate_bytes_per_second, 0u);
}

TEST(XlCfg, EscapesInDoubleQuotesOnly) {
  EXPECT_EQ(parse_xl_cfg(with_basics("extra = \"a\\\"b\\x41\"\n"), "g").cmdline, "a\"bA");
  EXPECT_EQ(parse_xl_cfg(with_basics("extra = 'a\\nb'\n"), "g").cmdline, "a\\nb");
  EXPECT_NE(error_of(with_basics("extra = \"a\\qb\"\n")).find("guest.cfg:3: unknown escape"), std::string::npos);
}

// Each bad file: the message starts with FILE:LINE and names the problem.
struct BadFile {
  const char* text;
  const char* expected;  // a part of the message
};

TEST(XlCfg, BadFilesNameTheLineAndTheProblem) {
  const BadFile cases[] = {
      {"name = 'g'\nkernel = '/k\n", "guest.cfg:2: unterminated string"},
      {"name = 'g'\nkernel = \"/k\nmemory = 5\n", "guest.cfg:2: unterminated string"},
      {"name = 'g'\nkernel = '/k'\nmemroy = 512\n", "guest.cfg:3: unknown key 'memroy'"},
      {"name = 'g'\nkernel = '/k'\n\nname = 'h'\n", "guest.cfg:4: 'name' is given twice (first at guest.cfg:1)"},
      {"name = 'g'\nkernel = '/k'\nmemory = '512'\n", "guest.cfg:3: 'memory' must be a number"},
      {"name = 'g'\nkernel = '/k'\nmemory = 512M\n", "guest.cfg:3: '512M' is not a number"},
      {"name = 'g'\nkernel = 5\n", "guest.cfg:2: 'kernel' must be a string"},
      {"name = 'g'\nkernel = '/k'\ndisk = '/a.img'\n", "guest.cfg:3: 'disk' must be a list"},
      {"name = 'g'\nkernel = '/k'\ntype = pvh\n", "guest.cfg:3: the value of 'type' must be a number, a list or a string in quotes, found 'pvh'"},
      {"name = 'g'\nkernel = '/k'\ntype = 'pv'\n", "guest.cfg:3: type 'pv': kdom has no PV mode"},
      {"name = 'g'\nkernel = '/k'\non_crash = 'explode'\n", "guest.cfg:3: on_crash: unknown lifecycle action 'explode'"},
      {"name = 'g'\nkernel = '/k'\non_crash = 'coredump-destroy'\n",
       "guest.cfg:3: on_crash 'coredump-destroy' is not supported"},
      {"name = 'g'\nkernel = '/k'\ndisk = [\n  '/a.img,raw,xvda',\n  '/b.qcow2,qcow2,xvdb',\n]\n",
       "guest.cfg:5: disk '/b.qcow2,qcow2,xvdb': format 'qcow2' is not supported"},
      {"name = 'g'\nkernel = '/k'\ndisk = ['backendtype=qdisk,vdev=xvda,target=/a']\n",
       "guest.cfg:3: disk 'backendtype=qdisk,vdev=xvda,target=/a': 'backendtype=' is not supported"},
      {"name = 'g'\nkernel = '/k'\ndisk = ['/a,raw,xvda,rx']\n", "unknown access 'rx'"},
      {"name = 'g'\nkernel = '/k'\nvif = ['bridge=br0',\n 'mac=01:16:3e:00:00:01']\n",
       "guest.cfg:4: vif 'mac=01:16:3e:00:00:01': MAC address '01:16:3e:00:00:01' is a multicast address"},
      {"name = 'g'\nkernel = '/k'\nvif = ['mac=00:16:3e:00:00']\n", "guest.cfg:3: vif 'mac=00:16:3e:00:00': MAC address"},
      {"name = 'g'\nkernel = '/k'\nvif = ['script=vif-bridge']\n", "'script=' is not supported"},
      {"name = 'g'\nkernel = '/k'\nvif = ['rate=10Mbit']\n", "guest.cfg:3: vif rate '10Mbit' is not like"},
      {"name = 'g'\nkernel = '/k'\nvif = ['model=e1000']\n", "model 'e1000' is not supported"},
      {"name = 'g'\n!!!\nkernel = '/k'\n", "guest.cfg:2: expected a setting 'KEY = VALUE', found '!'"},
      {"name = 'g'\nkernel '/k'\n", "guest.cfg:2: expected '=' after 'kernel'"},
      {"name = 'g'\nkernel = '/k' 'x'\n", "guest.cfg:2: unexpected ''' after the value of 'kernel'"},
      {"name = 'g'\nkernel =\n", "guest.cfg:2: 'kernel' has no value"},
      {"name = 'g'\nkernel = '/k'\ndisk = [ '/a.img',\n", "guest.cfg:3: the list of 'disk' opened on line 3 is not closed"},
      {"name = 'g'\nkernel = '/k'\ndisk = [ '/a.img'\nmemory = 5\n", "guest.cfg:4: the list of 'disk' opened on line 3 is not closed"},
      {"name = 'g'\nkernel = '/k'\ndisk = [ 5 ]\n", "guest.cfg:3: the items of the list of 'disk' must be strings"},
      {"name = 'g'\nkernel = '/k'\nrng = 2\n", "guest.cfg:3: 'rng' must be 0 or 1"},
      {"name = 'g'\nkernel = '/k'\nballoon_stats = 5\n", "guest.cfg:3: 'balloon_stats' needs 'balloon = 1'"},
      {"name = 'g'\nkernel = '/k'\nserial = 'file:/tmp/x'\n", "guest.cfg:3: serial 'file:/tmp/x' is not supported"},
      {"name = 'g'\nkernel = '/k'\nmemory = 99999999999999999999999\n", "guest.cfg:3: number '99999999999999999999999' is too large"},
      {"kernel = '/k'\n", "guest.cfg: no 'name' given"},
      {"name = 'g'\n", "guest.cfg: no 'kernel' given"},
      {"name = '123'\nkernel = '/k'\n", "guest.cfg: the domain name '123' is all digits"},
      {"name = 'Domain-0'\nkernel = '/k'\n", "guest.cfg: the domain name 'Domain-0' is reserved"},
      {"name = 'g'\nkernel = '/k'\nvcpus = 0\n", "guest.cfg: vcpus 0 is out of range"},
      {"name = 'g'\nkernel = '/k'\nmemory = 512\nmaxmem = 256\n", "guest.cfg: maxmem 256 MiB is out of range"},
      {"name = 'g'\nkernel = '/k'\nvsock = 2\n", "guest.cfg: vsock CID 2 is out of range"},
      {"name = 'g'\nkernel = '/k'\nuuid = 'not-a-uuid'\n", "guest.cfg: uuid 'not-a-uuid' is not of the form"},
  };
  for (const auto& bad : cases) {
    const std::string message = error_of(bad.text);
    EXPECT_NE(message.find(bad.expected), std::string::npos)
        << "config:\n" << bad.text << "\nmessage: " << message << "\nexpected: " << bad.expected;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(XlCfg, OverridesReplaceTheFilesValues) {
  const DomainConfig config = parse_xl_cfg(kFullConfig, "web.cfg",
                                           {"memory=512", "name=\"web-2\"", "cmdline='console=hvc0'", "disk=[]"});
  EXPECT_EQ(config.memory_mib, 512u);
  EXPECT_EQ(config.name, "web-2");
  EXPECT_EQ(config.cmdline, "console=hvc0");  // replaces the file's root and extra
  EXPECT_TRUE(config.disks.empty());
  EXPECT_EQ(config.vcpus, 2u);  // untouched

  const DomainConfig rooted =
      parse_xl_cfg(with_basics("cmdline = 'quiet'\n"), "g.cfg", {"root='/dev/vdb'", "extra='ro'"});
  EXPECT_EQ(rooted.cmdline, "root=/dev/vdb ro");
}

TEST(XlCfg, OverrideErrorsNameTheCommandLine) {
  auto override_error = [](const std::vector<std::string>& overrides) {
    try {
      parse_xl_cfg(with_basics(""), "g.cfg", overrides);
    } catch (const XlCfgError& error) {
      return std::string(error.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(override_error({"memroy=5"}), "command line: unknown key 'memroy'");
  EXPECT_EQ(override_error({"memory=5", "memory=6"}), "command line: 'memory' is given twice");
  EXPECT_EQ(override_error({"memory='5'"}), "command line: 'memory' must be a number");
  EXPECT_EQ(override_error({"memory"}), "command line: expected '=' after 'memory' at the end of the input");
}

TEST(XlCfg, ApplyOverridesToADomainConfig) {
  DomainConfig config = parse_xl_cfg(kFullConfig, "web.cfg");
  apply_xl_overrides(config, {"vcpus=3", "balloon=0", "on_crash='preserve'"});
  EXPECT_EQ(config.vcpus, 3u);
  EXPECT_EQ(config.balloon_stats_seconds, std::nullopt);
  EXPECT_EQ(config.on_crash, LifecycleAction::kPreserve);
  EXPECT_EQ(config.memory_mib, 1024u);

  DomainConfig unchanged = config;
  EXPECT_THROW(apply_xl_overrides(config, {"root='/dev/vda'"}), XlCfgError);
  try {
    apply_xl_overrides(config, {"vcpus=0"});
    ADD_FAILURE() << "vcpus=0 was accepted";
  } catch (const XlCfgError& error) {
    EXPECT_STREQ(error.what(), "command line: vcpus 0 is out of range (1 to 255)");
  }
  EXPECT_EQ(to_json(config), to_json(unchanged));  // a refused override changes nothing
}

// What a client can check of overrides without the config they will apply to (kdom restore).
TEST(XlCfg, CheckOverridesWithoutAConfig) {
  EXPECT_NO_THROW(check_xl_overrides({}));
  EXPECT_NO_THROW(check_xl_overrides({"name='web2'", "on_crash=\"preserve\"", "disk=['/img/a.img,raw,xvda,rw']",
                                      "vif=['bridge=br0']", "memory=512"}));
  const auto error = [](const std::vector<std::string>& overrides) {
    try {
      check_xl_overrides(overrides);
    } catch (const XlCfgError& error) {
      return std::string(error.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error({"memory"}), "command line: expected '=' after 'memory' at the end of the input");
  EXPECT_EQ(error({"memroy=5"}), "command line: unknown key 'memroy'");
  EXPECT_EQ(error({"on_crash=preserve"}),
            "command line: the value of 'on_crash' must be a number, a list or a string in quotes, found 'preserve'");
  EXPECT_EQ(error({"on_crash='explode'"}).rfind("command line: on_crash: ", 0), 0u);
  EXPECT_EQ(error({"name='a'", "name='b'"}), "command line: 'name' is given twice");
  EXPECT_EQ(error({"extra='quiet'"}),
            "command line: 'extra' cannot be overridden on its own here: give cmdline=\"...\" (the whole command line)");
  EXPECT_EQ(error({"vif=['colour=red']"}), "command line: vif 'colour=red': unknown vif parameter 'colour'");
}

class XlCfgFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kdom-xl-cfg-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / "guests");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

TEST_F(XlCfgFile, RelativePathsAreResolvedAgainstTheFilesDirectory) {
  const auto path = dir_ / "guests" / "a.cfg";
  std::ofstream(path) << "name = 'a'\nkernel = 'vmlinuz'\nramdisk = '../initrd.img'\n"
                         "disk = ['img/a.img,raw,xvda', 'target=/abs/b.img']\n";
  const DomainConfig config = parse_xl_cfg_file(path.string());
  EXPECT_EQ(config.kernel, (dir_ / "guests" / "vmlinuz").string());
  EXPECT_EQ(config.ramdisk, (dir_ / "initrd.img").string());
  ASSERT_EQ(config.disks.size(), 2u);
  EXPECT_EQ(config.disks[0].target, (dir_ / "guests" / "img" / "a.img").string());
  EXPECT_EQ(config.disks[1].target, "/abs/b.img");

  const DomainConfig overridden = parse_xl_cfg_file(path.string(), {"kernel='/boot/k'"});
  EXPECT_EQ(overridden.kernel, "/boot/k");
}

TEST_F(XlCfgFile, ErrorsNameThePath) {
  const auto missing = (dir_ / "missing.cfg").string();
  try {
    parse_xl_cfg_file(missing);
    ADD_FAILURE() << "a missing file was read";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("cannot read xl.cfg '" + missing + "'"), std::string::npos)
        << error.what();
  }
  const auto path = dir_ / "b.cfg";
  std::ofstream(path) << "name = 'b'\nkernel = 'k'\nvcpus = 'two'\n";
  try {
    parse_xl_cfg_file(path.string());
    ADD_FAILURE() << "a bad file was accepted";
  } catch (const XlCfgError& error) {
    EXPECT_EQ(std::string(error.what()), path.string() + ":3: 'vcpus' must be a number");
  }
}

TEST(DomainConfig, LifecycleActionNames) {
  for (auto action : {LifecycleAction::kDestroy, LifecycleAction::kRestart, LifecycleAction::kPreserve,
                      LifecycleAction::kRenameRestart})
    EXPECT_EQ(parse_lifecycle_action(lifecycle_action_name(action)), action);
  EXPECT_STREQ(lifecycle_action_name(LifecycleAction::kRenameRestart), "rename-restart");
  EXPECT_THROW(parse_lifecycle_action("Restart"), Error);
}

TEST(DomainConfig, JsonRoundTrip) {
  const DomainConfig config = parse_xl_cfg(kFullConfig, "web.cfg");
  const nlohmann::json json = to_json(config);
  EXPECT_EQ(json["on_crash"], "rename-restart");
  EXPECT_EQ(json["disks"][1]["read_only"], true);
  EXPECT_EQ(json["vifs"][0]["mac"], "00:16:3e:01:02:03");
  EXPECT_FALSE(json["vifs"][1].contains("mac"));
  const DomainConfig back = domain_config_from_json(nlohmann::json::parse(json.dump()));
  EXPECT_EQ(to_json(back), json);
  EXPECT_EQ(back.vifs[1].mac, std::nullopt);
  EXPECT_EQ(back.balloon_stats_seconds, std::optional<uint64_t>(5));
  EXPECT_EQ(back.vsock_cid, std::optional<uint64_t>(42));
  EXPECT_EQ(back.cmdline, config.cmdline);
}

TEST(DomainConfig, JsonDefaultsWhenKeysAreAbsent) {
  const DomainConfig config = domain_config_from_json({{"name", "a"}, {"kernel", "/k"}, {"vsock_cid", nullptr}});
  EXPECT_EQ(config.memory_mib, 128u);
  EXPECT_EQ(config.on_reboot, LifecycleAction::kRestart);
  EXPECT_EQ(config.vsock_cid, std::nullopt);
  EXPECT_NO_THROW(validate(config));
  // Signed JSON integers (as code builds them) read like parsed ones.
  EXPECT_EQ(domain_config_from_json({{"vcpus", 3}}).vcpus, 3u);
}

TEST(DomainConfig, JsonRefusals) {
  auto json_error = [](const nlohmann::json& json) {
    try {
      domain_config_from_json(json);
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(json_error({{"memroy", 5}}), "config: unknown key 'memroy'");
  EXPECT_EQ(json_error({{"memory_mib", "5"}}), "config: key 'memory_mib' must be a whole number");
  EXPECT_EQ(json_error({{"memory_mib", -5}}), "config: key 'memory_mib' must be a whole number");
  EXPECT_EQ(json_error({{"memory_mib", 1.5}}), "config: key 'memory_mib' must be a whole number");
  EXPECT_EQ(json_error({{"vcpus", uint64_t{1} << 33}}), "config: key 'vcpus' is too large (8589934592)");
  EXPECT_EQ(json_error({{"rng", 1}}), "config: key 'rng' must be true or false");
  EXPECT_EQ(json_error({{"on_crash", "explode"}}),
            "config: key 'on_crash': unknown lifecycle action 'explode' (known: destroy, restart, preserve, "
            "rename-restart)");
  EXPECT_EQ(json_error({{"disks", {{{"target", "/a"}, {"size", 5}}}}}), "config: disks[0]: unknown key 'size'");
  EXPECT_EQ(json_error({{"vifs", {{{"mac", 5}}}}}), "config: vifs[0]: key 'mac' must be a string");
  EXPECT_EQ(json_error({{"disks", "x"}}), "config: key 'disks' must be an array");
  EXPECT_EQ(json_error(nlohmann::json::array()), "config: expected a JSON object");
}

TEST(DomainConfig, Validate) {
  DomainConfig good;
  good.name = "a.b_c-1";
  good.kernel = "/k";
  good.uuid = "3F2504E0-4F89-11D3-9A0C-0305E82C3301";
  good.vsock_cid = 3;
  good.vifs.push_back({0, std::string("52:54:00:ab:cd:ef"), "br0", "", "", 0});
  EXPECT_NO_THROW(validate(good));

  auto error_for = [&](auto change) {
    DomainConfig config = good;
    change(config);
    try {
      validate(config);
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error_for([](DomainConfig& c) { c.name = ""; }), "the domain name is empty");
  EXPECT_NE(error_for([](DomainConfig& c) { c.name = std::string(65, 'a'); }).find("longer than 64"), std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.name = "a b"; }).find("may only contain"), std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c330"; }).find("uuid"),
            std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.memory_mib = 0; }).find("memory 0 MiB"), std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.memory_mib = (uint64_t{64} << 20) + 1; }).find("out of range"),
            std::string::npos);
  EXPECT_EQ(error_for([](DomainConfig& c) { c.memory_mib = uint64_t{64} << 20; }), "(no error)");
  EXPECT_NE(error_for([](DomainConfig& c) { c.vcpus = 256; }).find("vcpus 256"), std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.vcpus = 4; c.maxvcpus = 2; }).find("maxvcpus 2"), std::string::npos);
  EXPECT_EQ(error_for([](DomainConfig& c) { c.kernel.clear(); }), "no kernel given");
  EXPECT_NE(error_for([](DomainConfig& c) { c.disks.push_back({}); }).find("disk 0 has no target"), std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.vifs[0].mac = "52-54-00-ab-cd-ef"; }).find("MAC"), std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.vifs[0].tap = "a-very-long-tap-name"; }).find("TAP name"),
            std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.vsock_cid = (uint64_t{1} << 32) - 1; }).find("vsock CID"),
            std::string::npos);
  EXPECT_EQ(error_for([](DomainConfig& c) { c.vsock_cid = (uint64_t{1} << 32) - 2; }), "(no error)");
  // Disk names and NIC numbers: the ids of block-detach and network-detach.
  EXPECT_NE(error_for([](DomainConfig& c) { c.disks.push_back({"/a", "xvdb", false, false}); c.disks.push_back({"/b", "xvdb", false, false}); })
                .find("'xvdb' is given twice"),
            std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.disks.push_back({"/a", "vif0", false, false}); }).find("not like xvdb"),
            std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.disks.push_back({"/a", "xvd", false, false}); }).find("not like xvdb"),
            std::string::npos);
  EXPECT_EQ(error_for([](DomainConfig& c) { c.disks.push_back({"/a", "sdab", false, false}); }), "(no error)");
  EXPECT_NE(error_for([](DomainConfig& c) { c.vifs.push_back(c.vifs[0]); }).find("vif number (devid) 0 is given twice"),
            std::string::npos);
  EXPECT_NE(error_for([](DomainConfig& c) { c.vifs[0].devid = 100; }).find("out of range"), std::string::npos);
}

TEST(DomainConfig, DeviceNamesAreAssignedWhereNoneWasGiven) {
  DomainConfig config;
  config.disks = {{"/a", "", false, false}, {"/b", "xvda", false, false}, {"/c", "", false, false}};
  config.vifs = {VifSpec{}, VifSpec{}};
  config.vifs[1].devid = 1;
  config.vifs[1].mac = "52:54:00:00:00:01";
  assign_device_names(config);
  EXPECT_EQ(config.disks[0].vdev, "xvdb");  // xvda is taken
  EXPECT_EQ(config.disks[1].vdev, "xvda");
  EXPECT_EQ(config.disks[2].vdev, "xvdc");
  ASSERT_TRUE(config.vifs[0].mac);
  EXPECT_NO_THROW(validate_mac(*config.vifs[0].mac));
  EXPECT_EQ(config.vifs[0].mac->substr(0, 9), "02:6b:64:");
  EXPECT_EQ(config.vifs[1].mac, "52:54:00:00:00:01");
  EXPECT_EQ(next_devid(config), 2u);
  config.vifs[0].devid = 5;
  EXPECT_EQ(next_devid(config), 0u);
}

TEST(DomainConfig, VifsWithoutADevidGetTheirPlace) {
  const DomainConfig config = domain_config_from_json(
      {{"name", "a"}, {"kernel", "/k"}, {"vifs", {{{"bridge", "br0"}}, {{"bridge", "br0"}}, {{"devid", 7}}}}});
  ASSERT_EQ(config.vifs.size(), 3u);
  EXPECT_EQ(config.vifs[0].devid, 0u);
  EXPECT_EQ(config.vifs[1].devid, 1u);
  EXPECT_EQ(config.vifs[2].devid, 7u);
  EXPECT_EQ(to_json(config)["vifs"][2]["devid"], 7);
  EXPECT_THROW(vif_spec_from_json({{"devid", "one"}}, "nic", 0), Error);
  EXPECT_THROW(disk_spec_from_json({{"target", "/a"}, {"format", "raw"}}, "disk"), Error);
}

TEST(XlCfg, OneDiskOrVifSpecFromTheCommandLine) {
  const DiskSpec disk = parse_disk_spec("vdev=xvdb,access=ro,target=extra,disk.img", "/srv");
  EXPECT_EQ(disk.target, "/srv/extra,disk.img");  // target= takes the rest, commas and all
  EXPECT_EQ(disk.vdev, "xvdb");
  EXPECT_TRUE(disk.read_only);
  const VifSpec vif = parse_vif_spec("bridge=br0,mac=52:54:00:00:00:09");
  EXPECT_EQ(vif.bridge, "br0");
  EXPECT_EQ(vif.mac, "52:54:00:00:00:09");
  try {
    parse_disk_spec("vdev=xvdb,cdrom", "/srv");
    FAIL() << "a cdrom was taken";
  } catch (const XlCfgError& error) {
    EXPECT_EQ(std::string(error.what()).rfind("command line: disk 'vdev=xvdb,cdrom': ", 0), 0u) << error.what();
  }
  EXPECT_THROW(parse_vif_spec("bridge=br0,colour=red"), XlCfgError);
}

}  // namespace
}  // namespace kdom::config
