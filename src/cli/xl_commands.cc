// The xl-style verbs: CLI11 parses each verb's arguments, ApiClient carries the requests to
// kdomd, and the replies are printed in xl's formats (xl list's and xl uptime's columns, xl
// info's "key : value" lines) so that scripts written for xl keep working.
#include "cli/xl_commands.h"

#include <poll.h>
#include <sys/socket.h>
#include <termios.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <functional>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <thread>

#include "base/error.h"
#include "base/sse.h"
#include "cli/progress_line.h"
#include "cli/shutdown_command.h"
#include "vmm/control_client.h"
#include "config/domain_config.h"
#include "config/xl_cfg.h"

namespace kdom::cli {

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// A save or restore of a large domain takes a while: longer than any other request may. (kdomd
// waits an hour for a save and two minutes for a restored VMM to be ready.)
constexpr int kSaveSeconds = 3600 + 60;
constexpr int kRestoreSeconds = 180;
// A migration's pre-copy lasts as long as the guest dirties memory faster than it goes.
constexpr int kMigrateSeconds = 24 * 3600;

// xl waits for ever for `shutdown -w`; kdomd's API takes a limit, so give it a long one.
constexpr uint64_t kShutdownWaitSeconds = 3600;
constexpr auto kShutdownPollInterval = 250ms;
// A reboot's reply comes once the domain has restarted.
constexpr ApiClient::Timeout kRebootTimeout = 300s;
constexpr char kDetachKey = 0x1d;  // Ctrl-], as xl console
constexpr const char* kHostName = "Domain-0";

std::string domain_target(const std::string& dom) { return "/v1/domains/" + url_path_segment(dom); }

bool is_domain_id(const std::string& text) {
  return !text.empty() && text.size() <= 9 && text.find_first_not_of("0123456789") == std::string::npos;
}

// Parses a verb's arguments with `app`. Returns false when the user asked for help (printed to
// `out`): the verb then does nothing else.
bool parse_verb(CLI::App& app, const std::vector<std::string>& args, std::ostream& out) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 consumes from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return false;
  } catch (const CLI::ParseError& error) {
    std::string message = error.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    throw Error(app.get_name() + ": " + message + " (" + app.get_footer() + ")");
  }
  return true;
}

// A verb's parser: its name ("kdom list"), its description, and its usage line kept as the
// footer, so that help ends with it and usage errors can show it.
class VerbParser : public CLI::App {
 public:
  VerbParser(const std::string& verb, const std::string& description, const std::string& synopsis)
      : CLI::App(description, "kdom " + verb) {
    footer("usage: kdom " + verb + " " + synopsis);
  }
};

// Fields of kdomd's replies; a missing or mistyped one is kdomd's bug, named in one line.
const json& reply_field(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key))
    throw Error(std::string("kdomd's reply has no \"") + key + "\": " + object.dump().substr(0, 200));
  return object.at(key);
}

std::string text_field(const json& object, const char* key) {
  const json& value = reply_field(object, key);
  if (!value.is_string()) throw Error(std::string("kdomd's reply has a non-string \"") + key + "\"");
  return value.get<std::string>();
}

double number_field(const json& object, const char* key) {
  const json& value = reply_field(object, key);
  if (!value.is_number()) throw Error(std::string("kdomd's reply has a non-numeric \"") + key + "\"");
  return value.get<double>();
}

int64_t integer_field(const json& object, const char* key) {
  const json& value = reply_field(object, key);
  if (!value.is_number_integer()) throw Error(std::string("kdomd's reply has a non-integer \"") + key + "\"");
  return value.get<int64_t>();
}

json domain_list(const ApiClient& client) {
  json reply = client.call("GET", "/v1/domains");
  json domains = reply_field(reply, "domains");
  if (!domains.is_array()) throw Error("kdomd's reply has a \"domains\" that is not a list");
  return domains;
}

bool names_domain(const json& info, const std::string& dom) {
  return text_field(info, "name") == dom || (is_domain_id(dom) && std::to_string(integer_field(info, "id")) == dom);
}

bool names_host(const std::string& dom) { return dom == kHostName || dom == "0"; }

struct Selection {
  bool host = false;  // the Domain-0 row
  json domains = json::array();
};

// The domains `doms` name (all, and the host, when none is named), in kdomd's order.
Selection select_domains(const json& domains, const std::vector<std::string>& doms) {
  Selection selection;
  selection.host = doms.empty();
  for (const auto& dom : doms) {
    if (names_host(dom)) {
      selection.host = true;
      continue;
    }
    if (std::none_of(domains.begin(), domains.end(), [&](const json& info) { return names_domain(info, dom); }))
      throw Error("unknown domain '" + dom + "'");
  }
  for (const auto& info : domains)
    if (doms.empty() || std::any_of(doms.begin(), doms.end(), [&](const std::string& dom) { return names_domain(info, dom); }))
      selection.domains.push_back(info);
  return selection;
}

std::string printf_text(const char* format, auto... values) {
  char line[512];
  std::snprintf(line, sizeof(line), format, values...);
  return line;
}

// A JSON value as xl info shows it.
std::string info_value_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) return printf_text("%.1f", value.get<double>());
  return value.dump();
}

double host_uptime_seconds() {
  std::ifstream file("/proc/uptime");
  double seconds = 0;
  file >> seconds;
  return file ? seconds : 0.0;
}

// ---- the verbs ----

int create_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("create", "Create a domain from an xl.cfg(5) file, as xl create.",
                      "[-p] [-c] [-n] [-f] CFG [key=value...]");
  bool paused = false, console = false, dry_run = false;
  std::string file_option;
  std::vector<std::string> words;
  app.add_flag("-p,--paused", paused, "leave the domain paused once it is built");
  app.add_flag("-c,--console", console, "attach to the domain's console once it is created");
  app.add_flag("-n,--dryrun", dry_run, "print the domain's configuration (JSON) and create nothing");
  app.add_option("-f,--defconfig", file_option, "the xl.cfg file (instead of the first argument)");
  app.add_option("CFG", words, "the xl.cfg file, then key=value settings that override the file's");
  if (!parse_verb(app, args, io.out)) return 0;
  std::string path = file_option;
  if (path.empty()) {
    if (words.empty()) throw Error("kdom create needs an xl.cfg file (" + app.get_footer() + ")");
    path = words.front();
    words.erase(words.begin());
  }
  io.err << "Parsing config from " << path << "\n";
  // Overrides are merged before the file's settings are built (a `cmdline=` replaces the file's
  // root and extra).
  const config::DomainConfig domain = config::parse_xl_cfg_file(path, words);
  config::validate(domain);
  const json request = config::to_json(domain);
  if (dry_run) {
    io.out << request.dump(2) << "\n";
    return 0;
  }
  const json info = client.call("POST", paused ? "/v1/domains?paused=1" : "/v1/domains", request);
  const std::string id = std::to_string(integer_field(info, "id"));
  io.err << "created domain " << text_field(info, "name") << " (id " << id << ")\n";
  if (console) {
    io.out.flush();
    attach_console(client.upgrade(domain_target(id) + "/console", "kdom-console"), io.terminal_in, io.terminal_out);
  }
  return 0;
}

int list_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("list", "List the domains, the host first as Domain-0, as xl list.", "[-l] [--json] [DOM...]");
  bool long_format = false;
  std::vector<std::string> doms;
  app.add_flag("-l,--long,--json", long_format, "print kdomd's full description of each domain (JSON)");
  app.add_option("DOM", doms, "only these domains (name or id)");
  if (!parse_verb(app, args, io.out)) return 0;
  const Selection selection = select_domains(domain_list(client), doms);
  if (long_format) {
    io.out << selection.domains.dump(2) << "\n";
    return 0;
  }
  io.out << "Name                                        ID   Mem VCPUs\tState\tTime(s)\n";
  constexpr const char* kRow = "%-40s %5lld %5llu %5llu     %s  %8.1f\n";
  if (selection.host) {
    const json host = client.call("GET", "/v1/host");
    io.out << printf_text(kRow, kHostName, 0LL, static_cast<unsigned long long>(number_field(host, "total_memory_mib")),
                          static_cast<unsigned long long>(number_field(host, "nr_cpus")), "r-----", 0.0);
  }
  for (const auto& info : selection.domains)
    io.out << printf_text(kRow, text_field(info, "name").c_str(), static_cast<long long>(integer_field(info, "id")),
                          // xl's Mem is what the guest holds now, its balloon taken off (an
                          // older kdomd says only what it was given)
                          static_cast<unsigned long long>(
                              number_field(info, info.contains("actual_mib") ? "actual_mib" : "memory_mib")),
                          static_cast<unsigned long long>(number_field(info, "vcpus")),
                          xl_state_letters(text_field(info, "state")).c_str(), number_field(info, "cpu_time_s"));
  return 0;
}

int info_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("info", "Show facts about the host and kdomd, as xl info.", "");
  if (!parse_verb(app, args, io.out)) return 0;
  const json host = client.call("GET", "/v1/host");
  // xl info's names where xl has one.
  static constexpr std::pair<const char*, const char*> kLines[] = {
      {"host", "hostname"},           {"release", "kernel"},         {"nr_cpus", "nr_cpus"},
      {"total_memory", "total_memory_mib"}, {"free_memory", "free_memory_mib"}, {"kvm", "kvm"},
      {"nr_domains", "domains"},       {"kdom_version", "kdom_version"}, {"kdomd_pid", "daemon_pid"},
      {"kdomd_uptime", "daemon_uptime_s"}, {"event_readers", "event_readers"},
  };
  for (const auto& [name, key] : kLines)
    if (host.is_object() && host.contains(key)) io.out << printf_text("%-23s: ", name) << info_value_text(host.at(key)) << "\n";
  return 0;
}

// The verbs that take one DOM and make one request whose reply is not shown.
int simple_domain_verb(const std::string& verb, const std::string& description, const std::string& method,
                       const std::string& action, const std::vector<std::string>& args, const ApiClient& client,
                       XlIo& io, std::optional<ApiClient::Timeout> timeout = std::nullopt) {
  VerbParser app(verb, description, "DOM");
  std::string dom;
  app.add_option("DOM", dom, "the domain's name or id")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  client.call(method, domain_target(dom) + action, std::nullopt, timeout);
  return 0;
}

int destroy_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  return simple_domain_verb("destroy", "Stop a domain at once, as pulling its power cord (xl destroy).", "DELETE", "",
                            args, client, io);
}

int pause_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  return simple_domain_verb("pause", "Pause a domain's vCPUs (xl pause).", "POST", "/pause", args, client, io);
}

int unpause_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  return simple_domain_verb("unpause", "Let a paused domain run again (xl unpause).", "POST", "/unpause", args, client, io);
}

int reboot_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  return simple_domain_verb("reboot", "Restart a domain (xl reboot); returns once it runs again.", "POST", "/reboot",
                            args, client, io, kRebootTimeout);
}

bool names_control_socket(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(),
                     [](const std::string& arg) { return arg == "--control" || arg.rfind("--control=", 0) == 0; });
}

// After pressing the power buttons of `ids`: returns once none of them runs (gone, shut down
// or crashed), printing each as it goes.
void wait_for_shutdown(const ApiClient& client, std::set<int64_t> ids, XlIo& io) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kShutdownWaitSeconds);
  io.err << "Waiting for " << ids.size() << " domains\n";
  for (;;) {
    std::set<int64_t> running;
    for (const auto& info : domain_list(client)) {
      const std::string state = text_field(info, "state");
      if (ids.count(integer_field(info, "id")) && state != "shutdown" && state != "crashed")
        running.insert(integer_field(info, "id"));
    }
    for (const int64_t id : ids)
      if (!running.count(id)) io.err << "Domain " << id << " has been shut down\n";
    ids = running;
    if (ids.empty()) return;
    if (std::chrono::steady_clock::now() >= deadline)
      throw Error(std::to_string(ids.size()) + " domains are still running " + std::to_string(kShutdownWaitSeconds) +
                  " s after their power buttons were pressed");
    std::this_thread::sleep_for(kShutdownPollInterval);
  }
}

int shutdown_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  if (names_control_socket(args)) return shutdown_command(args, io.out);  // a domain of `kdom run`
  VerbParser app("shutdown", "Press a domain's ACPI power button, as xl shutdown; the guest's OS shuts it down.",
                      "[-w] [-a] [DOM]   (a domain of kdom run: kdom shutdown --control PATH [--wait SECONDS])");
  bool wait = false, all = false;
  std::string dom;
  app.add_flag("-w,--wait", wait, "return once the domain(s) have shut down");
  app.add_flag("-a,--all", all, "all of kdomd's domains");
  app.add_option("DOM", dom, "the domain's name or id");
  if (!parse_verb(app, args, io.out)) return 0;
  if (all && !dom.empty()) throw Error("kdom shutdown: give DOM or -a, not both");
  if (!all && dom.empty())
    throw Error("kdom shutdown needs DOM or -a (kdomd's domains), or needs --control PATH (a domain of kdom run)");
  if (!all) {
    io.err << "Shutting down domain " << dom << "\n";
    if (!wait) {
      client.call("POST", domain_target(dom) + "/shutdown", json::object());
      return 0;
    }
    client.call("POST", domain_target(dom) + "/shutdown", json{{"wait_seconds", kShutdownWaitSeconds}},
                std::chrono::seconds(kShutdownWaitSeconds) + ApiClient::kDefaultTimeout);
    io.err << "Domain " << dom << " has been shut down\n";
    return 0;
  }
  std::set<int64_t> pressed;
  std::string first_failure;
  for (const auto& info : domain_list(client)) {
    const std::string state = text_field(info, "state");
    if (state == "shutdown" || state == "crashed" || state == "dying") continue;
    const int64_t id = integer_field(info, "id");
    io.err << "Shutting down domain " << id << "\n";
    const ApiResponse response = client.request("POST", domain_target(std::to_string(id)) + "/shutdown", json::object());
    if (response.ok()) {
      pressed.insert(id);
    } else if (first_failure.empty()) {
      first_failure = "domain " + std::to_string(id) + ": " + api_error_message(response);
    }
  }
  if (wait && !pressed.empty()) wait_for_shutdown(client, pressed, io);
  if (!first_failure.empty()) throw Error(first_failure);
  return 0;
}

int rename_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("rename", "Give a domain a new name (xl rename).", "DOM NEWNAME");
  std::string dom, new_name;
  app.add_option("DOM", dom, "the domain's name or id")->required();
  app.add_option("NEWNAME", new_name, "its new name")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  client.call("POST", domain_target(dom) + "/rename", json{{"name", new_name}});
  return 0;
}

int save_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("save", "Save a domain's whole state to a file, then destroy it (xl save).",
                 "[-c] [-p] DOM FILE   (a domain of kdom run: kdom save [-c] [-p] --control PATH FILE)");
  bool keep_running = false, leave_paused = false;
  std::string control;
  std::vector<std::string> words;
  app.add_flag("-c", keep_running, "keep the domain running after the save");
  app.add_flag("-p", leave_paused, "leave the domain paused after the save");
  app.add_option("--control", control, "a domain of kdom run: its control socket (then only FILE is given)");
  app.add_option("DOM FILE", words, "the domain's name or id, and the file to write");
  if (!parse_verb(app, args, io.out)) return 0;
  if (keep_running && leave_paused) throw Error("kdom save: -c and -p cannot both be given");
  const size_t wanted = control.empty() ? 2 : 1;
  if (words.size() != wanted)
    throw Error(control.empty() ? "kdom save needs DOM and FILE" : "kdom save --control PATH needs FILE (only)");
  const std::string path = std::filesystem::absolute(words.back()).lexically_normal().string();
  const auto figures = [](const json& reply) {
    char text[160];
    std::snprintf(text, sizeof(text), "%.1f MiB in %.2f s (the guest stood still %.2f s)",
                  static_cast<double>(reply.value("bytes", uint64_t{0})) / (1024.0 * 1024.0),
                  reply.value("seconds", 0.0), reply.value("downtime_s", 0.0));
    return std::string(text);
  };
  if (!control.empty()) {
    const char* then = keep_running ? "running" : leave_paused ? "paused" : "stop";
    const auto save = [&] {
      return vmm::control_request(control, {{"op", "save"}, {"path", path}, {"then", then}}, kSaveSeconds);
    };
    // Subscribed before the save starts: the domain's control loop serves no one while it saves.
    // Without a subscription (eight already), the save goes on without its progress line.
    UniqueFd events;
    if (io.err_is_terminal) {
      try {
        events = vmm::subscribe_to_events(control);
      } catch (const std::exception&) {
      }
    }
    const json reply =
        events.valid() ? run_showing_progress(io.err, "saving", save, SaveProgressEvents(events.get())) : save();
    io.err << "saved to " << path << ": " << figures(reply) << "; the domain is "
           << (keep_running ? "running" : leave_paused ? "paused" : "stopped") << "\n";
    return 0;
  }
  const std::string dom = words.front();
  const std::string then = keep_running ? "running" : leave_paused ? "paused" : "destroy";
  const auto save = [&] {
    return client.call("POST", domain_target(dom) + "/save", json{{"path", path}, {"then", then}},
                       std::chrono::seconds(kSaveSeconds));
  };
  // kdomd shows the save's progress as the domain's job (GET /v1/domains/DOM).
  const auto job = [&]() -> std::optional<Progress> {
    const json info = client.call("GET", domain_target(dom));
    const auto it = info.find("job");
    if (it == info.end() || !it->is_object()) return std::nullopt;
    return Progress{it->value("done_bytes", uint64_t{0}), it->value("total_bytes", uint64_t{0})};
  };
  const json reply =
      io.err_is_terminal ? run_showing_progress(io.err, "saving " + dom, save, job) : save();
  io.err << "saved domain " << reply.value("name", dom) << ": " << figures(reply) << "; it is "
         << (then == "destroy" ? "destroyed" : then) << "\n";
  return 0;
}

int restore_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("restore", "Bring back a domain saved with kdom save, where it was (xl restore).",
                 "[-p] FILE [key=value...]");
  bool paused = false;
  std::string file;
  std::vector<std::string> settings;
  app.add_flag("-p,--paused", paused, "leave the restored domain paused");
  app.add_option("FILE", file, "the saved file")->required();
  app.add_option("SETTINGS", settings,
                 "xl.cfg settings that change the saved config, strings in quotes: name (name=NEWNAME also "
                 "without), on_poweroff, on_reboot, on_crash, disk= (the same disks in the same order, other "
                 "targets), vif= (the same NICs, other bridges); memory, vcpus, kernel, cmdline and the devices "
                 "the guest knows cannot change");
  if (!parse_verb(app, args, io.out)) return 0;
  // name=NEWNAME without quotes, as kdom restore took it before it took other settings, is the
  // API's "name"; the rest are xl.cfg settings (strings in quotes).
  std::optional<std::string> name;
  std::vector<std::string> overrides;
  for (const auto& setting : settings) {
    if (setting.rfind("name=", 0) == 0 && setting.size() > 5 && setting[5] != '"' && setting[5] != '\'') {
      if (name) throw Error("kdom restore: name is given twice");
      name = setting.substr(5);
    } else {
      overrides.push_back(setting);
    }
  }
  // Malformed settings are refused here; whether the saved domain can take them, kdomd says.
  config::check_xl_overrides(overrides);
  const std::string path = std::filesystem::absolute(file).lexically_normal().string();
  json request{{"path", path}};
  if (name) request["name"] = *name;
  if (!overrides.empty()) request["overrides"] = overrides;
  const auto restore = [&] {
    return client.call("POST", paused ? "/v1/restore?paused=1" : "/v1/restore", request,
                       std::chrono::seconds(kRestoreSeconds));
  };
  // kdomd shows how far the VMM has read the file as the restoring domain's job.
  const auto job = [&]() -> std::optional<Progress> {
    const json listed = client.call("GET", "/v1/domains");
    for (const auto& domain : reply_field(listed, "domains")) {
      const json job = domain.value("job", json());
      if (job.is_object() && job.value("kind", "") == "restore" && job.value("path", "") == path)
        return Progress{job.value("done_bytes", uint64_t{0}), job.value("total_bytes", uint64_t{0})};
    }
    return std::nullopt;
  };
  const json info = io.err_is_terminal ? run_showing_progress(io.err, "restoring", restore, job) : restore();
  io.err << "restored domain " << text_field(info, "name") << " (id " << integer_field(info, "id") << ")"
         << (paused ? ", paused" : "") << "\n";
  return 0;
}

// The first line of a token file, without white space (as kdomd reads its --token-file).
std::string read_token_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw Error("kdom migrate: cannot read the token file '" + path + "'");
  std::string token;
  std::getline(file, token);
  token.erase(std::remove_if(token.begin(), token.end(), [](unsigned char c) { return std::isspace(c); }), token.end());
  if (token.empty()) throw Error("kdom migrate: the token file '" + path + "' is empty");
  return token;
}

int migrate_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("migrate", "Move a running domain to another host's kdomd while it runs (xl migrate).",
                 "[--downtime-ms N] [--max-bandwidth MIB] [--max-rounds N] [--no-auto-converge] [--token-file FILE] "
                 "[--json] DOM HOST[:PORT]   |   --cancel DOM");
  bool cancel = false, as_json = false, no_auto_converge = false;
  uint32_t downtime_ms = 50, max_bandwidth = 0, max_rounds = 30;
  std::string token_file;
  std::vector<std::string> words;
  app.add_flag("--cancel", cancel, "stop the migration of DOM under way; it runs on here");
  app.add_option("--downtime-ms", downtime_ms, "the longest pause the last round may take (default 50)")
      ->check(CLI::Range(1u, 1'000'000u));
  app.add_option("--max-bandwidth", max_bandwidth, "MiB/s the migration may use (default: no limit)")
      ->check(CLI::Range(0u, 1'000'000u));
  app.add_option("--max-rounds", max_rounds, "rounds of dirty pages before the last, at most (default 30)")
      ->check(CLI::Range(1u, 1000u));
  app.add_flag("--no-auto-converge", no_auto_converge,
               "never throttle the guest's vCPUs, even when it dirties memory faster than the link carries it");
  app.add_option("--token-file", token_file,
                 "the destination's migration token (default: the token this host's kdomd was started with)");
  app.add_flag("--json", as_json, "print the progress and the outcome as JSON lines, for programs");
  app.add_option("DOM HOST", words, "the domain's name or id, and the destination: HOST, HOST:PORT or localhost");
  if (!parse_verb(app, args, io.out)) return 0;
  if (cancel) {
    if (words.size() != 1) throw Error("kdom migrate --cancel needs DOM (only)");
    client.call("POST", domain_target(words[0]) + "/migrate/cancel", json::object());
    io.err << "cancelled the migration of " << words[0] << "; it runs on here\n";
    return 0;
  }
  if (words.size() != 2) throw Error("kdom migrate needs DOM and HOST (see kdom migrate --help)");
  const std::string& dom = words[0];
  json request{{"target", words[1]}, {"downtime_ms", downtime_ms}, {"max_rounds", max_rounds},
               {"max_bandwidth_mib", max_bandwidth}, {"auto_converge", !no_auto_converge}};
  if (!token_file.empty()) request["token"] = read_token_file(token_file);
  const auto migrate = [&] {
    return client.call("POST", domain_target(dom) + "/migrate", request, std::chrono::seconds(kMigrateSeconds));
  };
  const auto job = [&]() -> std::optional<json> {
    const json info = client.call("GET", domain_target(dom));
    const auto it = info.find("job");
    if (it == info.end() || !it->is_object() || it->value("kind", "") != "migrate") return std::nullopt;
    return *it;
  };
  const std::string label = "migrating " + dom + " to " + words[1];
  json reply;
  if (as_json) {
    // One line per change of the job, then the outcome; a failure is a line too.
    json last;
    try {
      reply = run_showing_line(
          io.err, "", migrate,
          [&]() -> std::optional<std::string> {
            if (auto now = job(); now && *now != last) {
              last = *now;
              io.out << json{{"event", "progress"}, {"job", *now}}.dump() << "\n" << std::flush;
            }
            return std::nullopt;
          },
          250ms);
    } catch (const std::exception& error) {
      io.out << json{{"event", "failed"}, {"error", error.what()}}.dump() << "\n" << std::flush;
      throw;
    }
    io.out << json{{"event", "migrated"}, {"result", reply}}.dump() << "\n" << std::flush;
    return 0;
  }
  reply = io.err_is_terminal
              ? run_showing_line(io.err, label + ": starting", migrate,
                                 [&]() -> std::optional<std::string> {
                                   const auto now = job();
                                   if (!now) return std::nullopt;
                                   return migration_line(label, *now);
                                 })
              : migrate();
  char figures[160];
  std::snprintf(figures, sizeof(figures), "%.1f MiB in %llu rounds, %.2f s; the guest stood still %.0f ms",
                static_cast<double>(reply.value("sent_bytes", uint64_t{0})) / (1024.0 * 1024.0),
                static_cast<unsigned long long>(reply.value("rounds", uint64_t{0})), reply.value("seconds", 0.0),
                reply.value("downtime_ms", 0.0));
  io.err << "migrated " << reply.value("name", dom) << " to " << words[1] << " (domain "
         << reply.value("destination_id", 0u) << " there): " << figures << "\n";
  return 0;
}

int domid_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("domid", "Print the id of the domain with this name (xl domid).", "NAME");
  std::string name;
  app.add_option("NAME", name, "the domain's name")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  if (names_host(name)) {
    io.out << "0\n";
    return 0;
  }
  io.out << integer_field(client.call("GET", domain_target(name)), "id") << "\n";
  return 0;
}

int domname_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("domname", "Print the name of the domain with this id (xl domname).", "ID");
  std::string id;
  app.add_option("ID", id, "the domain's id")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  if (!is_domain_id(id)) throw Error("kdom domname: '" + id + "' is not a domain id (a number)");
  if (names_host(id)) {
    io.out << kHostName << "\n";
    return 0;
  }
  io.out << text_field(client.call("GET", domain_target(id)), "name") << "\n";
  return 0;
}

int uptime_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("uptime", "Show how long domains have run, as xl uptime.", "[DOM...]");
  std::vector<std::string> doms;
  app.add_option("DOM", doms, "only these domains (name or id)");
  if (!parse_verb(app, args, io.out)) return 0;
  const Selection selection = select_domains(domain_list(client), doms);
  constexpr const char* kRow = "%-33s %4lld %s\n";
  io.out << printf_text("%-33s %4s %s\n", "Name", "ID", "Uptime");
  if (selection.host) io.out << printf_text(kRow, kHostName, 0LL, xl_uptime_text(host_uptime_seconds()).c_str());
  for (const auto& info : selection.domains)
    io.out << printf_text(kRow, text_field(info, "name").c_str(), static_cast<long long>(integer_field(info, "id")),
                          xl_uptime_text(number_field(info, "uptime_s")).c_str());
  return 0;
}

int console_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("console", "Attach to a domain's serial console (xl console); Ctrl-] detaches.",
                      "[--log | --follow] DOM");
  bool log = false, follow = false;
  std::string dom;
  app.add_flag("--log", log, "print the console output kdomd kept (its last 256 KiB) and exit");
  app.add_flag("--follow", follow, "print the kept output, then new output as it comes (until interrupted)");
  app.add_option("DOM", dom, "the domain's name or id")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  if (log && follow) throw Error("kdom console: give --log or --follow, not both");
  const std::string target = domain_target(dom) + "/console";
  if (log) {
    const ApiResponse response = client.request("GET", target);
    if (!response.ok()) throw Error(api_error_message(response));
    io.out << response.text;
    return 0;
  }
  if (follow) {
    client.stream_get(target + "?follow=1", [&](std::string_view data) {
      io.out.write(data.data(), static_cast<std::streamsize>(data.size()));
      io.out.flush();
      return true;
    });
    return 0;
  }
  io.out.flush();
  attach_console(client.upgrade(target, "kdom-console"), io.terminal_in, io.terminal_out);
  return 0;
}

int mem_set_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("mem-set", "Set a domain's memory target through its balloon (xl mem-set).", "DOM MEM");
  std::string dom, memory;
  app.add_option("DOM", dom, "the domain's name or id")->required();
  app.add_option("MEM", memory, "the new size: a number with a unit b, k, m, g or t (no unit: KiB)")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  const uint64_t mib = parse_xl_memory_mib(memory);
  client.call("POST", domain_target(dom) + "/mem-set", json{{"memory_mib", mib}});
  return 0;
}

// One event as a line for people: time, domain id and name, what happened and its details.
std::string event_line(const json& event) {
  std::string line = event.value("time", "") + " " + std::to_string(event.value("id", 0u)) + " " +
                     event.value("name", "") + " " + event.value("event", "");
  std::string details;
  for (const char* key : {"reason", "action", "old_name", "actual_mib", "target_mib", "kind", "by"}) {
    if (!event.contains(key)) continue;
    const json& value = event[key];
    details += std::string(" ") + key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  // A hot-plugged device: its name in the domain.
  if (event.contains("device") && event["device"].is_object()) {
    const json& device = event["device"];
    if (device.contains("vdev")) details += " vdev=" + device.value("vdev", "");
    if (device.contains("devid")) details += " devid=" + std::to_string(device.value("devid", 0u));
  }
  if (event.contains("message") && event["message"].is_string()) details += ": " + event["message"].get<std::string>();
  return line + details;
}

// Reads SSE from `target` and hands each message's JSON to `on_event` until `count` events
// have come (0: no end) or the server ends the stream (an error: kdomd stopped).
void follow_events(const ApiClient& client, const std::string& target, uint64_t count, const std::string& verb,
                   const std::function<void(const SseMessage&, const nlohmann::json&)>& on_event) {
  SseParser parser;
  uint64_t seen = 0;
  bool done = false;
  client.stream_get(target, [&](std::string_view data) {
    parser.feed(data, [&](const SseMessage& message) {
      if (done) return;
      const json event = json::parse(message.data, nullptr, /*allow_exceptions=*/false);
      if (!event.is_object()) throw Error(verb + ": kdomd sent an event that is not a JSON object");
      if (message.event == "overflow")
        throw Error(verb + ": " + event.value("message", std::string("this reader fell behind and was dropped")));
      on_event(message, event);
      done = count != 0 && ++seen >= count;
    });
    return !done;
  });
  if (!done) throw Error(verb + ": kdomd ended the event stream (it stopped)");
}

int events_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("events", "Print what happens to the host's domains as it happens (as virsh event --loop).",
                 "[--domain DOM] [--json] [--count N]");
  std::string domain;
  bool as_json = false;
  uint64_t count = 0;
  app.add_option("--domain", domain, "only this domain's events (its name or id; it need not exist yet)");
  app.add_flag("--json", as_json, "one JSON object per event, as kdomd sends them");
  app.add_option("--count", count, "exit after this many events (default: until interrupted)");
  if (!parse_verb(app, args, io.out)) return 0;
  std::string target = "/v1/events";
  if (!domain.empty()) target += "?domain=" + url_path_segment(domain);
  follow_events(client, target, count, "kdom events", [&](const SseMessage&, const json& event) {
    io.out << (as_json ? event.dump() : event_line(event)) << "\n";
    io.out.flush();
  });
  return 0;
}

std::string store_target(const std::string& path) { return "/v1/store?path=" + url_path_segment(path); }

// xenstore-ls's tree under `node` (kdomd's reply for `path`): "name = \"value\"", one space of
// indent per level.
void print_store_tree(const ApiClient& client, const std::string& path, const json& node, int depth, std::ostream& out) {
  for (const auto& child : reply_field(node, "children")) {
    const std::string name = child.get<std::string>();
    const std::string child_path = (path == "/" ? "/" : path + "/") + name;
    const json below = client.call("GET", store_target(child_path));
    out << std::string(static_cast<size_t>(depth), ' ') << name << " = " << json(text_field(below, "value")).dump() << "\n";
    print_store_tree(client, child_path, below, depth + 1, out);
  }
}

int store_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("store", "Read, write and watch kdomd's store (xenstore's role), as the xenstore-* tools.",
                 "read PATH | write PATH VALUE | ls [PATH] | rm PATH | chmod PATH PERM... | watch [--count N] PATH");
  app.require_subcommand(1);
  std::string path, value;
  std::vector<std::string> permissions;
  uint64_t count = 0;
  auto* read = app.add_subcommand("read", "print a node's value");
  read->add_option("PATH", path, "an absolute path, as /local/domain/3/name")->required();
  auto* write = app.add_subcommand("write", "set a node's value (missing parents are made)");
  write->add_option("PATH", path, "an absolute path")->required();
  write->add_option("VALUE", value, "the value")->required();
  auto* ls = app.add_subcommand("ls", "print the tree under a node (default /), as xenstore-ls");
  ls->add_option("PATH", path, "an absolute path");
  auto* rm = app.add_subcommand("rm", "remove a node and everything under it");
  rm->add_option("PATH", path, "an absolute path")->required();
  auto* chmod = app.add_subcommand("chmod", "set a node's permissions, as xenstore-chmod: the owner's entry first");
  chmod->add_option("PATH", path, "an absolute path")->required();
  chmod->add_option("PERM", permissions, "n, r, w or b and a domain id (as n0 r5)")->required();
  auto* watch = app.add_subcommand("watch", "print each change at or under a node as it happens, as xenstore-watch");
  watch->add_option("--count", count, "exit after this many events (the first is the watch's own path)");
  watch->add_option("PATH", path, "an absolute path")->required();
  static const std::set<std::string> kCommands = {"read", "write", "ls", "rm", "chmod", "watch"};
  if (!args.empty() && !args[0].empty() && args[0].front() != '-' && !kCommands.count(args[0]))
    throw Error("kdom store: unknown command '" + args[0] + "' (read, write, ls, rm, chmod, watch)");
  if (!parse_verb(app, args, io.out)) return 0;
  if (ls->parsed() && path.empty()) path = "/";
  if (path.empty() || path.front() != '/') throw Error("kdom store: '" + path + "' is not an absolute path (it starts with /)");
  if (read->parsed()) {
    io.out << text_field(client.call("GET", store_target(path)), "value") << "\n";
  } else if (write->parsed()) {
    client.call("PUT", store_target(path), json{{"value", value}});
  } else if (ls->parsed()) {
    print_store_tree(client, path, client.call("GET", store_target(path)), 0, io.out);
  } else if (rm->parsed()) {
    client.call("DELETE", store_target(path));
  } else if (chmod->parsed()) {
    std::string text;
    for (const auto& permission : permissions) text += (text.empty() ? "" : " ") + permission;
    client.call("PUT", store_target(path), json{{"permissions", text}});
  } else if (watch->parsed()) {
    follow_events(client, "/v1/store/watch?path=" + url_path_segment(path), count, "kdom store watch",
                  [&](const SseMessage& message, const json& event) {
                    io.out << message.event << " " << event.value("path", "") << "\n";
                    io.out.flush();
                  });
  }
  return 0;
}

// The terminal in raw mode (keys go to the guest as typed, no echo, no signals) for as long as
// this lives; nothing happens when `fd` is not a terminal.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (!::isatty(fd) || ::tcgetattr(fd, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  bool active() const { return active_; }

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

// xl vcpu-list's state letters: r running, b blocked (waiting), p paused.
std::string vcpu_state_letters(const json& domain, const json& vcpu) {
  if (domain.value("state", "") == "paused") return "--p";
  return vcpu.value("state", "?") == "R" ? "r--" : "-b-";
}

int vcpu_list_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("vcpu-list", "Show each vCPU: the CPU it last ran on, its state, CPU time and affinity (xl vcpu-list).",
                 "[DOM...]");
  std::vector<std::string> doms;
  app.add_option("DOM", doms, "only these domains (name or id)");
  if (!parse_verb(app, args, io.out)) return 0;
  const json all = reply_field(client.call("GET", "/v1/stats"), "domains");
  constexpr const char* kRow = "%-32s %5s %5s %5s %5s %9s  %s\n";
  io.out << printf_text(kRow, "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)");
  for (const json& domain : all) {
    const std::string name = domain.value("name", "");
    const std::string id = std::to_string(domain.value("id", 0u));
    if (!doms.empty() && std::find(doms.begin(), doms.end(), name) == doms.end() &&
        std::find(doms.begin(), doms.end(), id) == doms.end())
      continue;
    for (const json& vcpu : domain.value("vcpus", json::array())) {
      const std::string time = printf_text("%.1f", vcpu.value("cpu_time_s", 0.0));
      io.out << printf_text(kRow, name.c_str(), id.c_str(), std::to_string(vcpu.value("vcpu", 0u)).c_str(),
                            std::to_string(vcpu.value("cpu", -1)).c_str(), vcpu_state_letters(domain, vcpu).c_str(),
                            time.c_str(), (vcpu.value("affinity", std::string("?")) + " / all").c_str());
    }
  }
  for (const std::string& dom : doms) {
    const bool found = std::any_of(all.begin(), all.end(), [&](const json& d) {
      return d.value("name", "") == dom || std::to_string(d.value("id", 0u)) == dom;
    });
    if (!found) throw Error("kdom vcpu-list: no domain '" + dom + "'");
  }
  return 0;
}

int vcpu_pin_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("vcpu-pin", "Let a domain's vCPU run only on some host CPUs (xl vcpu-pin).", "DOM VCPU|all CPUS");
  std::string dom, vcpu, cpus;
  app.add_option("DOM", dom, "the domain's name or id")->required();
  app.add_option("VCPU", vcpu, "the vCPU's number, or all")->required();
  app.add_option("CPUS", cpus, "the host CPUs: all, or numbers and ranges (0-3,5)")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  std::vector<std::string> vcpus;
  if (vcpu == "all") {
    const json stats = client.call("GET", domain_target(dom) + "/stats");  // kept: the loop refers into it
    for (const json& v : reply_field(stats, "vcpus"))
      vcpus.push_back(std::to_string(v.value("vcpu", 0u)));
  } else {
    if (vcpu.empty() || vcpu.find_first_not_of("0123456789") != std::string::npos)
      throw Error("kdom vcpu-pin: '" + vcpu + "' is not a vCPU number or all");
    vcpus.push_back(vcpu);
  }
  for (const std::string& number : vcpus)
    client.call("POST", domain_target(dom) + "/vcpus/" + number + "/pin", json{{"cpus", cpus}});
  return 0;
}

// ---- hot-plug: block-attach, block-detach, block-list, network-attach, network-detach, network-list ----

constexpr uint32_t kDetachWaitSeconds = 30;

// The domain's reply-list (`key`: "disks" or "vifs") of every domain named.
int device_list(const std::vector<std::string>& doms, const ApiClient& client, XlIo& io, const char* resource,
                const char* key, const char* header, const std::function<std::string(const json&)>& row) {
  io.out << header << "\n";
  for (const std::string& dom : doms) {
    const json reply = client.call("GET", domain_target(dom) + "/" + resource);  // the loop refers into it
    for (const json& device : reply_field(reply, key)) io.out << row(device) << "\n";
  }
  return 0;
}

// block-attach and network-attach take their spec as one argument or several (joined with ',').
std::string joined_spec(const std::vector<std::string>& words) {
  std::string spec;
  for (const auto& word : words) spec += (spec.empty() ? "" : ",") + word;
  return spec;
}

int block_attach_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("block-attach", "Add a disk to a running domain (xl block-attach).", "DOM DISK-SPEC...");
  std::string dom;
  std::vector<std::string> spec;
  app.add_option("DOM", dom, "the domain's name or id")->required();
  app.add_option("DISK-SPEC", spec, "as an item of xl.cfg's disk= list: 'target=IMG,vdev=xvdb[,access=ro]'")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  const config::DiskSpec disk = config::parse_disk_spec(joined_spec(spec), std::filesystem::current_path().string());
  json body = {{"target", disk.target}, {"vdev", disk.vdev}, {"read_only", disk.read_only}, {"shared", disk.shared}};
  client.call("POST", domain_target(dom) + "/disks", body);
  return 0;
}

int network_attach_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("network-attach", "Add a NIC to a running domain (xl network-attach).", "DOM VIF-SPEC...");
  std::string dom;
  std::vector<std::string> spec;
  app.add_option("DOM", dom, "the domain's name or id")->required();
  app.add_option("VIF-SPEC", spec, "as an item of xl.cfg's vif= list: 'bridge=BR[,mac=MAC][,rate=RATE]'")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  const config::VifSpec vif = config::parse_vif_spec(joined_spec(spec));
  json body = {{"bridge", vif.bridge}, {"tap", vif.tap}, {"ip", vif.ip}, {"rate_bytes_per_second", vif.rate_bytes_per_second}};
  if (vif.mac) body["mac"] = *vif.mac;
  const json nic = client.call("POST", domain_target(dom) + "/nics", body);
  io.out << "devid " << nic.value("devid", 0u) << ", MAC " << nic.value("mac", std::string("")) << "\n";
  return 0;
}

// block-detach and network-detach: DOM DEVICE [--force] [--wait S].
int detach_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io, const char* verb,
                const char* description, const char* device_help, const char* resource) {
  VerbParser app(verb, description, "[-f] [-w SECONDS] DOM DEVICE");
  std::string dom, device;
  bool force = false;
  uint32_t wait = kDetachWaitSeconds;
  app.add_flag("-f,--force", force, "take the device away at once, without waiting for the guest to let go");
  app.add_option("-w,--wait", wait, "how long the guest has to let go (seconds, default 30)")->check(CLI::Range(1, 86400));
  app.add_option("DOM", dom, "the domain's name or id")->required();
  app.add_option("DEVICE", device, device_help)->required();
  if (!parse_verb(app, args, io.out)) return 0;
  const std::string target = domain_target(dom) + "/" + resource + "/" + url_path_segment(device) +
                             "?wait=" + std::to_string(wait) + (force ? "&force=1" : "");
  client.call("DELETE", target, std::nullopt, ApiClient::Timeout(std::chrono::seconds(wait + 30)));
  return 0;
}

int block_detach_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  return detach_verb(args, client, io, "block-detach", "Remove a disk from a running domain (xl block-detach).",
                     "the disk's vdev (xvdb...)", "disks");
}

int network_detach_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  return detach_verb(args, client, io, "network-detach", "Remove a NIC from a running domain (xl network-detach).",
                     "the NIC's devid or MAC", "nics");
}

int block_list_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("block-list", "List a domain's disks (xl block-list).", "DOM...");
  std::vector<std::string> doms;
  app.add_option("DOM", doms, "the domains' names or ids")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  constexpr char kRow[] = "%-8s %-5s %-10s %s";
  return device_list(doms, client, io, "disks", "disks", printf_text(kRow, "Vdev", "Mode", "State", "Target").c_str(),
                     [&](const json& d) {
                       return printf_text(kRow, d.value("vdev", "").c_str(), d.value("mode", "").c_str(),
                                          d.value("state", "").c_str(), d.value("target", "").c_str());
                     });
}

int network_list_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("network-list", "List a domain's NICs (xl network-list).", "DOM...");
  std::vector<std::string> doms;
  app.add_option("DOM", doms, "the domains' names or ids")->required();
  if (!parse_verb(app, args, io.out)) return 0;
  constexpr char kRow[] = "%-4s %-17s %-10s %-12s %s";
  return device_list(doms, client, io, "nics", "vifs",
                     printf_text(kRow, "Idx", "Mac Addr.", "State", "Bridge", "TAP").c_str(), [&](const json& v) {
                       return printf_text(kRow, std::to_string(v.value("devid", 0u)).c_str(), v.value("mac", "").c_str(),
                                          v.value("state", "").c_str(), v.value("bridge", "").c_str(),
                                          v.value("tap", "").c_str());
                     });
}

// One row of kdom top: a domain's figures and its rates since the sample before.
struct TopRow {
  std::string name, state;
  uint64_t id = 0;
  double cpu_s = 0, cpu_percent = 0;
  uint64_t memory_mib = 0;
  double memory_percent = 0;
  uint64_t vcpus = 0, nets = 0, disks = 0;
  double net_tx_kib_s = 0, net_rx_kib_s = 0, disk_reads_s = 0, disk_writes_s = 0;
};

double sum_of(const json& items, const char* key) {
  double total = 0;
  for (const json& item : items) total += item.value(key, 0.0);
  return total;
}

std::vector<TopRow> top_rows(const json& before, const json& now, double seconds, uint64_t host_mib) {
  std::vector<TopRow> rows;
  for (const json& d : now) {
    TopRow row;
    row.name = d.value("name", "");
    row.id = d.value("id", uint64_t{0});
    row.state = xl_state_letters(d.value("state", ""));
    row.cpu_s = d.value("cpu_time_s", 0.0);
    row.memory_mib = d.value("actual_mib", uint64_t{0});
    row.memory_percent = host_mib ? 100.0 * static_cast<double>(row.memory_mib) / static_cast<double>(host_mib) : 0;
    row.vcpus = d.value("vcpu_count", uint64_t{0});
    const json nets = d.value("nets", json::array()), disks = d.value("disks", json::array());
    row.nets = nets.size();
    row.disks = disks.size();
    for (const json& b : before) {
      if (b.value("id", uint64_t{0}) != row.id || seconds <= 0) continue;
      const json old_nets = b.value("nets", json::array()), old_disks = b.value("disks", json::array());
      row.cpu_percent = std::max(0.0, 100.0 * (row.cpu_s - b.value("cpu_time_s", 0.0)) / seconds);
      row.net_tx_kib_s = std::max(0.0, (sum_of(nets, "tx_bytes") - sum_of(old_nets, "tx_bytes")) / 1024 / seconds);
      row.net_rx_kib_s = std::max(0.0, (sum_of(nets, "rx_bytes") - sum_of(old_nets, "rx_bytes")) / 1024 / seconds);
      row.disk_reads_s = std::max(0.0, (sum_of(disks, "reads") - sum_of(old_disks, "reads")) / seconds);
      row.disk_writes_s = std::max(0.0, (sum_of(disks, "writes") - sum_of(old_disks, "writes")) / seconds);
    }
    rows.push_back(row);
  }
  return rows;
}

void sort_top_rows(std::vector<TopRow>& rows, const std::string& column) {
  auto key = [&](const TopRow& row) -> double {
    if (column == "cpu") return -row.cpu_percent;
    if (column == "mem") return -static_cast<double>(row.memory_mib);
    if (column == "netrx") return -row.net_rx_kib_s;
    if (column == "nettx") return -row.net_tx_kib_s;
    if (column == "vbd") return -(row.disk_reads_s + row.disk_writes_s);
    return static_cast<double>(row.id);
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const TopRow& a, const TopRow& b) {
    if (column == "name") return a.name < b.name;
    return key(a) < key(b);
  });
}

std::string top_table(const std::vector<TopRow>& rows) {
  constexpr const char* kHead = "%-20s %5s %6s %10s %6s %9s %6s %5s %4s %10s %10s %4s %9s %9s\n";
  constexpr const char* kRow = "%-20s %5llu %6s %10.1f %6.1f %9llu %6.1f %5llu %4llu %10.1f %10.1f %4llu %9.1f %9.1f\n";
  std::string out = printf_text(kHead, "NAME", "ID", "STATE", "CPU(sec)", "CPU(%)", "MEM(MiB)", "MEM(%)", "VCPUS",
                                "NETS", "NETTX(k/s)", "NETRX(k/s)", "VBDS", "VBD_RD/s", "VBD_WR/s");
  for (const TopRow& r : rows)
    out += printf_text(kRow, r.name.substr(0, 20).c_str(), static_cast<unsigned long long>(r.id), r.state.c_str(), r.cpu_s,
                       r.cpu_percent, static_cast<unsigned long long>(r.memory_mib), r.memory_percent,
                       static_cast<unsigned long long>(r.vcpus), static_cast<unsigned long long>(r.nets), r.net_tx_kib_s,
                       r.net_rx_kib_s, static_cast<unsigned long long>(r.disks), r.disk_reads_s, r.disk_writes_s);
  return out;
}

int top_verb(const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  VerbParser app("top", "A live table of the domains' use of the host, as xentop; q quits.",
                 "[-b] [-d SECONDS] [-i ITERATIONS] [-s name|id|cpu|mem|nettx|netrx|vbd]");
  bool batch = false;
  double delay = 3;
  uint64_t iterations = 0;
  std::string sort = "id";
  app.add_flag("-b,--batch", batch, "print a table each time instead of redrawing the screen (for scripts)");
  app.add_option("-d,--delay", delay, "seconds between updates (default 3)")->check(CLI::Range(0.1, 3600.0));
  app.add_option("-i,--iterations", iterations, "stop after this many tables (default: until q or interrupted)");
  app.add_option("-s,--sort", sort, "the column to sort by, largest first (name and id: in order)")
      ->check(CLI::IsMember({"name", "id", "cpu", "mem", "nettx", "netrx", "vbd"}));
  if (!parse_verb(app, args, io.out)) return 0;
  const uint64_t host_mib = client.call("GET", "/v1/host").value("total_memory_mib", uint64_t{0});
  const bool interactive = !batch && ::isatty(io.terminal_in) && ::isatty(io.terminal_out);
  std::optional<RawTerminal> raw;
  if (interactive) raw.emplace(io.terminal_in);
  json before = reply_field(client.call("GET", "/v1/stats"), "domains");
  auto sampled = std::chrono::steady_clock::now();
  for (uint64_t shown = 0; iterations == 0 || shown < iterations; ++shown) {
    // Waits for the next update; in a terminal, q (or Ctrl-C, the terminal being raw) quits.
    const auto wait = std::chrono::milliseconds(static_cast<int64_t>(delay * 1000));
    if (interactive) {
      pollfd key{io.terminal_in, POLLIN, 0};
      if (::poll(&key, 1, static_cast<int>(wait.count())) > 0) {
        char c = 0;
        if (::read(io.terminal_in, &c, 1) == 1 && (c == 'q' || c == 'Q' || c == 3)) break;
      }
    } else {
      std::this_thread::sleep_for(wait);
    }
    const json now = reply_field(client.call("GET", "/v1/stats"), "domains");
    const auto at = std::chrono::steady_clock::now();
    std::vector<TopRow> rows = top_rows(before, now, std::chrono::duration<double>(at - sampled).count(), host_mib);
    sort_top_rows(rows, sort);
    const std::string table = top_table(rows);
    if (interactive) {
      std::string screen = "\033[H\033[2J" + printf_text("kdom top - %zu domains, every %.1f s, sorted by %s; q quits\r\n",
                                                          rows.size(), delay, sort.c_str());
      for (char c : table) screen += c == '\n' ? std::string("\r\n") : std::string(1, c);
      (void)!::write(io.terminal_out, screen.data(), screen.size());
    } else {
      io.out << table;
      if (iterations == 0 || shown + 1 < iterations) io.out << "\n";
      io.out.flush();
    }
    before = now;
    sampled = at;
  }
  return 0;
}

using VerbFunction = int (*)(const std::vector<std::string>&, const ApiClient&, XlIo&);

struct Verb {
  const char* name;
  VerbFunction run;
};

constexpr Verb kVerbs[] = {
    {"create", create_verb},   {"list", list_verb},       {"info", info_verb},       {"destroy", destroy_verb},
    {"shutdown", shutdown_verb}, {"reboot", reboot_verb}, {"pause", pause_verb},     {"unpause", unpause_verb},
    {"rename", rename_verb},   {"domid", domid_verb},     {"domname", domname_verb}, {"uptime", uptime_verb},
    {"console", console_verb}, {"mem-set", mem_set_verb},  {"events", events_verb},
    {"store", store_verb},     {"vcpu-list", vcpu_list_verb}, {"vcpu-pin", vcpu_pin_verb}, {"top", top_verb},
    {"block-attach", block_attach_verb},     {"block-detach", block_detach_verb},
    {"block-list", block_list_verb},         {"network-attach", network_attach_verb},
    {"network-detach", network_detach_verb}, {"network-list", network_list_verb},
    {"save", save_verb},                     {"restore", restore_verb},
    {"migrate", migrate_verb},
};

const Verb* find_verb(const std::string& word) {
  for (const auto& verb : kVerbs)
    if (word == verb.name) return &verb;
  return nullptr;
}

// ---- the console ----

// Writes all of `data`; false when the other side has gone (a closed pipe or connection).
bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    const ssize_t written = (n < 0 && errno == ENOTSOCK) ? ::write(fd, data, size) : n;
    if (written < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd entry{fd, POLLOUT, 0};
        ::poll(&entry, 1, -1);
        continue;
      }
      if (errno == EPIPE || errno == ECONNRESET) return false;
      throw SystemError("console write", errno);
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
  return true;
}

}  // namespace

bool is_xl_verb(const std::string& word) { return find_verb(word) != nullptr; }

int xl_command(const std::string& verb, const std::vector<std::string>& args, const ApiClient& client, XlIo& io) {
  const Verb* found = find_verb(verb);
  if (!found) throw Error("unknown command '" + verb + "'");
  return found->run(args, client, io);
}

uint64_t parse_xl_memory_mib(const std::string& text) {
  const auto bad = [&] {
    return Error("invalid memory size '" + text +
                 "': expected a whole number with an optional unit b, k, m, g or t (no unit: KiB)");
  };
  const size_t digits = text.find_first_not_of("0123456789");
  const size_t digit_count = digits == std::string::npos ? text.size() : digits;
  if (digit_count == 0 || text.size() - digit_count > 1) throw bad();
  uint64_t unit = 1024;
  if (digit_count < text.size()) {
    switch (text.back()) {
      case 'b': case 'B': unit = 1; break;
      case 'k': case 'K': unit = uint64_t{1} << 10; break;
      case 'm': case 'M': unit = uint64_t{1} << 20; break;
      case 'g': case 'G': unit = uint64_t{1} << 30; break;
      case 't': case 'T': unit = uint64_t{1} << 40; break;
      default: throw bad();
    }
  }
  const std::string number = text.substr(0, digit_count);
  const auto too_large = Error("memory size '" + text + "' is too large");
  if (number.size() > 19) throw too_large;
  const uint64_t count = std::stoull(number);
  if (count > std::numeric_limits<uint64_t>::max() / unit) throw too_large;
  const uint64_t mib = count * unit >> 20;
  if (mib == 0) throw Error("memory size '" + text + "' is less than 1 MiB");
  return mib;
}

std::string xl_state_letters(const std::string& state) {
  std::string letters = "------";
  if (state == "running") letters[0] = 'r';
  else if (state == "paused") letters[2] = 'p';
  else if (state == "shutdown") letters[3] = 's';
  else if (state == "crashed") letters[4] = 'c';
  else if (state == "dying") letters[5] = 'd';
  return letters;
}

std::string xl_uptime_text(double seconds) {
  const uint64_t total = seconds > 0 ? static_cast<uint64_t>(seconds) : 0;
  const unsigned second = total % 60, minute = total / 60 % 60, hour = total / 3600 % 24;
  const uint64_t days = total / 86400;
  const std::string clock = printf_text("%2u:%02u:%02u", hour, minute, second);
  if (days == 0) return clock;
  return std::to_string(days) + (days == 1 ? " day, " : " days, ") + clock;
}

void attach_console(UpgradedConnection connection, int terminal_in, int terminal_out) {
  const int guest = connection.fd.get();
  if (!write_all(terminal_out, connection.early_bytes.data(), connection.early_bytes.size())) return;
  const RawTerminal raw(terminal_in);
  // Ctrl-] detaches only on a terminal: piped input may hold any byte, and is sent as it is.
  const bool interactive = raw.active();
  bool input_open = true;
  char buffer[16 * 1024];
  for (;;) {
    pollfd fds[2] = {{guest, POLLIN, 0}, {input_open ? terminal_in : -1, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw SystemError("poll on the console", errno);
    }
    if (fds[0].revents) {
      const ssize_t n = ::read(guest, buffer, sizeof(buffer));
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return;  // kdomd ended the console (domain gone)
      if (n < 0 && errno != EINTR && errno != EAGAIN) throw SystemError("reading the console from kdomd", errno);
      if (n > 0 && !write_all(terminal_out, buffer, static_cast<size_t>(n))) return;
    }
    if (fds[1].revents) {
      const ssize_t n = ::read(terminal_in, buffer, sizeof(buffer));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {  // the input ended: keep showing the guest's output until the domain goes
        input_open = false;
        continue;
      }
      size_t size = static_cast<size_t>(n);
      const char* detach = interactive ? static_cast<const char*>(std::memchr(buffer, kDetachKey, size)) : nullptr;
      if (detach) size = static_cast<size_t>(detach - buffer);
      if (!write_all(guest, buffer, size) || detach) return;
    }
  }
}

}  // namespace kdom::cli
